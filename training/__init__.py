"""fersr-train: the KDEF three-phase study (restoration before emotion classification)."""
