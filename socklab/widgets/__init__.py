"""ipywidgets panels (the top layer). Each panel also has a text transcript for static views."""
from .panel import LabPanel  # noqa: F401
