class TransitionError(Exception):
    """A state change that is not allowed now. The message is safe to show a reviewer or requester."""
