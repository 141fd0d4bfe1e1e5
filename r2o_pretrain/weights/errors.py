"""The one error of weight reading and conversion, and how a reader's exception is summarised in it."""


class ConversionError(RuntimeError):
    """The file cannot be read as ResNet weights; the message names it and says what to do."""


def exception_summary(exc: BaseException) -> str:
    """``"KeyError: 101"``: the type and the first line of the message (also of an empty one)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__
