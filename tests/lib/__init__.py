"""Labs, doubles and runners shared by test modules (not tests themselves)."""
