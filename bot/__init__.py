"""consentbot: the consent checklist for child-protection information sharing."""
