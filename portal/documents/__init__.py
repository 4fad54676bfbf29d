"""PDF work shared by every package: inspection, geometry, page images, authoring, stamping."""
