"""Looking inside a trained network: its kernels, feature maps, saliency, neighbours and map.

Nothing here imports torch: the CLI reads MAP_POINTS while it builds its parser.
"""

MAP_POINTS = 2000  # test images in the 2-D map (t-SNE's time grows with the square of this)
