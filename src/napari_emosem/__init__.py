"""napari-emosem: annotation assist for emotion stimuli in paintings.

The core (model, data, training, evaluation, CLI) needs no display; the napari plugin in
``_widget``/``_reader``/``_writer``/``_sample_data`` is a thin layer over it. Importing this package
is cheap: torch and napari are imported only where they are used.
"""

from .emotions import EMOTIONS, parse_emotions
from .errors import EmoSEMError

__version__ = "0.1.0"

__all__ = ["EMOTIONS", "EmoSEMError", "__version__", "parse_emotions"]
