//! ed25519 batch verification of many frames in one multi-scalar check,
//! shaped for a gateway.
//!
//! For signatures `(R_i, s_i)` by keys `A_i` over messages with challenge
//! `h_i = SHA-512(R_i || A_i || M_i) mod ℓ`, each one valid means
//! `[s_i]B = R_i + [h_i]A_i`. With weights `z_i` that the signers cannot
//! predict, all are valid (with overwhelming probability) when
//!
//! ```text
//! [−Σ z_i·s_i] B  +  Σ [z_i] R_i  +  Σ_keys [Σ_{i: A_i = A} z_i·h_i] A  =  0
//! ```
//!
//! Two things make this cheaper than `ed25519_dalek::verify_batch` for a
//! gateway's traffic, with the same equation:
//!
//! - **Frames of one device share one point.** A gateway hears the same
//!   devices again and again, so the weights of one key's frames are summed
//!   and its point enters the multi-scalar multiplication once, not once per
//!   frame.
//! - **Weights from SHA-512, not a STROBE transcript.** The weights are
//!   derived from a digest of every challenge and every `s` (so a signer
//!   cannot pick inputs that cancel out without breaking SHA-512), then
//!   `z_i = SHA-512(digest || i)` truncated to 128 bits. The library hashed
//!   the same inputs with byte-at-a-time Keccak, 4 % of the gateway's CPU
//!   under a flood.
//!
//! Checks done per signature before the batch, so the batch accepts no
//! encoding that `verify_strict` rejects: `s` canonical (`s < ℓ`), `R` a
//! canonical encoding of a point that is not of small order. What a
//! cofactorless batch check can still accept while `verify_strict` rejects
//! is a signature whose key owner added a torsion component to `R` or to the
//! key (docs/protocol.md §7): never a forgery. A failed batch says only that
//! some signature is bad; the caller then checks each one on its own.

use std::collections::HashMap;

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha512};

/// One signature to check: the key, the signed bytes as the parts that are
/// concatenated to form the message (so no copy is made), the signature.
pub(super) struct Signed<'a> {
    pub key: &'a VerifyingKey,
    pub message: [&'a [u8]; 2],
    pub signature: &'a [u8; 64],
}

/// Separates the weight digest from any other use of SHA-512 on these bytes.
const WEIGHTS_LABEL: &[u8] = b"seed-frame batch weights v1";

/// True when every signature is valid (see the module docs for the exact
/// meaning); false when at least one is not, or `items` is empty.
pub(super) fn verify_all(items: &[Signed<'_>]) -> bool {
    if items.is_empty() {
        return false;
    }
    let mut parts: Vec<(EdwardsPoint, Scalar, [u8; 64])> = Vec::with_capacity(items.len());
    for item in items {
        let Some(checked) = check_one(item) else {
            return false;
        };
        parts.push(checked);
    }

    let mut weights_digest = Sha512::new();
    weights_digest.update(WEIGHTS_LABEL);
    weights_digest.update((items.len() as u64).to_le_bytes());
    for (_, s, challenge) in &parts {
        weights_digest.update(challenge);
        weights_digest.update(s.as_bytes());
    }
    let weights_digest: [u8; 64] = weights_digest.finalize().into();

    let mut base_coefficient = Scalar::ZERO;
    let mut r_weights: Vec<Scalar> = Vec::with_capacity(items.len());
    let mut r_points: Vec<EdwardsPoint> = Vec::with_capacity(items.len());
    let mut per_key: HashMap<[u8; 32], (EdwardsPoint, Scalar)> = HashMap::new();
    for (index, ((r, s, challenge), item)) in parts.into_iter().zip(items).enumerate() {
        let z = weight(&weights_digest, index as u64);
        base_coefficient -= z * s;
        r_weights.push(z);
        r_points.push(r);
        let h = Scalar::from_bytes_mod_order_wide(&challenge);
        let entry = per_key
            .entry(item.key.to_bytes())
            .or_insert_with(|| (item.key.to_edwards(), Scalar::ZERO));
        entry.1 += z * h;
    }

    let scalars = std::iter::once(base_coefficient)
        .chain(r_weights)
        .chain(per_key.values().map(|(_, weight)| *weight));
    let points = std::iter::once(ED25519_BASEPOINT_POINT)
        .chain(r_points)
        .chain(per_key.values().map(|(point, _)| *point));
    EdwardsPoint::vartime_multiscalar_mul(scalars, points).is_identity()
}

/// The per-signature checks: `R` decoded, `s` parsed, the challenge hashed.
fn check_one(item: &Signed<'_>) -> Option<(EdwardsPoint, Scalar, [u8; 64])> {
    let mut r_bytes = [0u8; 32];
    r_bytes.copy_from_slice(&item.signature[..32]);
    let mut s_bytes = [0u8; 32];
    s_bytes.copy_from_slice(&item.signature[32..]);
    let s: Scalar = Option::from(Scalar::from_canonical_bytes(s_bytes))?;
    if !is_canonical_y(&r_bytes) {
        return None;
    }
    let r = CompressedEdwardsY(r_bytes).decompress()?;
    if r.is_small_order() {
        return None;
    }
    let mut challenge = Sha512::new();
    challenge.update(r_bytes);
    challenge.update(item.key.as_bytes());
    for part in item.message {
        challenge.update(part);
    }
    Some((r, s, challenge.finalize().into()))
}

/// Whether the 255-bit y coordinate is below p = 2^255 − 19: an encoding
/// with y ≥ p names the same point as y − p, a second encoding.
fn is_canonical_y(bytes: &[u8; 32]) -> bool {
    let top_is_max = bytes[31] & 0x7f == 0x7f;
    let middle_is_max = bytes[1..31].iter().all(|&b| b == 0xff);
    !(top_is_max && middle_is_max && bytes[0] >= 0xed)
}

/// The weight of signature `index`: 128 bits of SHA-512(digest || index).
fn weight(digest: &[u8; 64], index: u64) -> Scalar {
    let hash: [u8; 64] = Sha512::new()
        .chain_update(digest)
        .chain_update(index.to_le_bytes())
        .finalize()
        .into();
    let mut low = [0u8; 16];
    low.copy_from_slice(&hash[..16]);
    Scalar::from(u128::from_le_bytes(low))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn signed(seed: u8, message: &[u8]) -> (VerifyingKey, [u8; 64]) {
        let key = SigningKey::from_bytes(&[seed; 32]);
        (key.verifying_key(), key.sign(message).to_bytes())
    }

    /// Each message signed by one of `keys` keys, in turn.
    fn signed_by(messages: &[Vec<u8>], keys: u8) -> Vec<(VerifyingKey, [u8; 64], &[u8])> {
        messages
            .iter()
            .zip(0u8..)
            .map(|(m, i)| {
                let (key, signature) = signed(i % keys, m);
                (key, signature, m.as_slice())
            })
            .collect()
    }

    fn check(entries: &[(VerifyingKey, [u8; 64], &[u8])]) -> bool {
        let items: Vec<Signed<'_>> = entries
            .iter()
            .map(|(key, signature, message)| Signed {
                key,
                message: [&message[..1], &message[1..]],
                signature,
            })
            .collect();
        verify_all(&items)
    }

    #[test]
    fn good_signatures_pass_also_when_keys_repeat() {
        let messages: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 1 + usize::from(i)]).collect();
        let entries = signed_by(&messages, 3);
        assert!(check(&entries));
        assert!(check(&entries[..1]));
        assert!(!check(&[]), "an empty batch proves nothing");
    }

    #[test]
    fn one_bad_signature_fails_the_batch() {
        let messages: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 8]).collect();
        let mut entries = signed_by(&messages, 2);
        // Another message under the same key and signature.
        entries[7].2 = &messages[6];
        assert!(!check(&entries));
        // A signature from the other key.
        let mut swapped = entries.clone();
        swapped[7].2 = &messages[7];
        swapped[7].0 = entries[0].0;
        assert!(!check(&swapped));
    }

    #[test]
    fn non_canonical_s_and_r_encodings_are_refused() {
        let message = b"seed";
        let (key, signature) = signed(5, message);
        assert!(check(&[(key, signature, message)]));

        // s + ℓ verifies in the group equation but is a second encoding.
        let s = Scalar::from_canonical_bytes(signature[32..].try_into().unwrap()).unwrap();
        let l_minus_one = -Scalar::ONE;
        let mut s_plus_l = [0u8; 32];
        let mut carry = 1u16; // adds ℓ = (ℓ − 1) + 1, bytewise
        for (i, byte) in s_plus_l.iter_mut().enumerate() {
            let sum = u16::from(s.as_bytes()[i]) + u16::from(l_minus_one.as_bytes()[i]) + carry;
            *byte = sum as u8;
            carry = sum >> 8;
        }
        let mut malleated = signature;
        malleated[32..].copy_from_slice(&s_plus_l);
        assert!(!check(&[(key, malleated, message)]));

        assert!(!is_canonical_y(&[0xff; 32]));
        let mut p = [0xff; 32];
        p[0] = 0xed;
        p[31] = 0x7f;
        assert!(!is_canonical_y(&p), "y = p");
        p[0] = 0xec;
        assert!(is_canonical_y(&p), "y = p - 1");
    }

    #[test]
    fn a_small_order_r_is_refused() {
        let message = b"seed";
        let (key, mut signature) = signed(9, message);
        // The identity point (y = 1) as R.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        signature[..32].copy_from_slice(&identity);
        assert!(!check(&[(key, signature, message)]));
    }
}
