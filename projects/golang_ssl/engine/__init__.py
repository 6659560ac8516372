"""GOLANG engine parts: the LARC optimizer and the pre-training and probe
hooks."""

from .gaelle_hook import GAELLEHook
from .gaelle_larc import GAELLELARC
from .probe_hook import GAELLEProbeHook

__all__ = ['GAELLEHook', 'GAELLELARC', 'GAELLEProbeHook']
