"""The Snakemake adapter: one small module per workflow/rules/*.smk file, thin calls into the
stages."""
