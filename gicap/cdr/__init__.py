"""Content Disarm and Reconstruction: the pipeline every file travels."""
