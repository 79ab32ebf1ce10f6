"""Qt and napari pieces of the EmoSEM annotator (the core modules never import these)."""
