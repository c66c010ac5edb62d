"""fersr: facial emotion recognition in low-resolution video, with face restoration before classification.

The stream runs ``source -> detect -> align -> degrade -> enhance -> classify -> track -> overlay -> sink``;
each stage is a module (or folder) of this package named for its verb.
"""

__version__ = "0.1.0"
