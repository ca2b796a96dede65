"""Side-by-side benchmark of gicap and c-icap (`make bench`, i.e. `python -m bench.run`)."""
