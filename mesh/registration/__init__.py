"""What an agent signs to register: the proof of possession of its identity key."""

from mesh.registration.proof import PROOF_TAG, proof_message, sign_proof, verify_proof

__all__ = ["PROOF_TAG", "proof_message", "sign_proof", "verify_proof"]
