"""The model: the TFT transform, the Keras network, training and its inputs.

Its modules import TensorFlow; this package's own namespace does not, so a command line can name
:class:`BeamOptionsError` without paying for TensorFlow.
"""


class BeamOptionsError(ValueError):
    """The Beam pipeline options given (``beam_args``) are refused by Beam; the message says why."""
