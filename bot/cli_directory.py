"""`consentbot staff sync-teams`: people and roles from the Entra directory."""

from __future__ import annotations
