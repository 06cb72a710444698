"""Energy: traces, sources behind one interface, and the terms of each cell."""
