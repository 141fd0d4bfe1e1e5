"""The one error of weight reading and conversion."""


class ConversionError(RuntimeError):
    """The file cannot be read as ResNet weights; the message names it and says what to do."""
