"""grmu: group-robust machine unlearning."""

__version__ = "0.1.0"


class GrmuError(Exception):
    """An error a user can fix: bad params, a missing file, an unknown name.

    Stage scripts print its message as one line and exit non-zero.
    """

    @classmethod
    def wrap(cls, what: str, e: Exception) -> "GrmuError":
        """``what: ExceptionType: message``, cut to its first line (for errors of other libraries)."""
        return cls(f"{what}: {type(e).__name__}: {e}".splitlines()[0])
