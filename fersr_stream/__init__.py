"""fersr: facial emotion recognition in low-resolution video, with face restoration before classification.

The stream runs ``read -> detect -> track -> crop (align + degrade) -> enhance -> classify -> smooth -> overlay ->
write`` (:mod:`fersr_stream.pipeline.stages`); each step's code is a module (or folder) of this package named for
what it does.
"""

__version__ = "0.1.0"
