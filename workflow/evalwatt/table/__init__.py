"""Cell records, the final table, its derived columns, the repeats table and the study's view."""
