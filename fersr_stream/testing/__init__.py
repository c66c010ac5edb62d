"""Test and benchmark scaffolding, apart from the stream's modules: synthetic clips with known faces
(:mod:`.synthetic`), random-init restoration networks saved in the upstream checkpoint layouts
(:mod:`.random_weights`), and the official GFPGAN stack for parity checks (:mod:`.reference`)."""
