"""Attestation: evidence that a coordinator runs the code it claims, and the policy that judges it."""
