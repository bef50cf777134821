"""Errors a user can act on. Their messages say what is wrong and what to do;
the dock, Processing and the command line show them as they are."""


class RailcarCounterError(Exception):
    """Base class: the message is meant for the analyst."""


class InputError(RailcarCounterError):
    """The input (raster, area of interest, tracks, date) cannot be used."""


class Canceled(RailcarCounterError):
    """The user cancelled the run."""

    def __init__(self, message="Cancelled by the user."):
        super().__init__(message)
