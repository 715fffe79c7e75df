//! Checks for `POST /hooks/git`: signature verification, a rate limiter and a replay guard.
//!
//! All three are pure (no I/O, the clock passed in) so the HTTP handler stays thin and the checks
//! are unit-testable. A delivery only ever *triggers* a fetch; it never carries state, so the
//! worst a forged-but-accepted delivery could do is cause an extra fetch — still, a bad or missing
//! signature is refused before anything else happens.

use std::collections::{HashSet, VecDeque};
use std::time::Instant;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Larger bodies are refused unread: push payloads are a few KiB, GitHub caps them at 25 MiB but
/// we never look at the content, so 1 MiB is plenty and bounds the memory an attacker can pin.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Delivery ids longer than this are refused rather than remembered (GitHub's are UUIDs).
const MAX_DELIVERY_ID_LEN: usize = 128;

/// Why a delivery was refused. None is retryable by the sender as-is except `RateLimited`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookError {
    #[error("missing X-Hub-Signature-256 or X-Gitlab-Token header")]
    MissingSignature,
    #[error("signature does not match")]
    BadSignature,
    #[error("body is larger than {MAX_BODY_BYTES} bytes")]
    BodyTooLarge,
    #[error("too many deliveries, try again later")]
    RateLimited,
    #[error("delivery was already received")]
    Replayed,
    /// An empty secret would let anyone compute a valid signature, so it accepts nothing.
    #[error("no webhook secret is configured")]
    NoSecret,
    #[error("delivery id is too long")]
    BadDeliveryId,
}

impl WebhookError {
    /// A bounded label for metrics and logs.
    pub fn code(&self) -> &'static str {
        match self {
            WebhookError::MissingSignature => "missing_signature",
            WebhookError::BadSignature => "bad_signature",
            WebhookError::BodyTooLarge => "body_too_large",
            WebhookError::RateLimited => "rate_limited",
            WebhookError::Replayed => "replayed",
            WebhookError::NoSecret => "no_secret",
            WebhookError::BadDeliveryId => "bad_delivery_id",
        }
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

/// Verifies a delivery: GitHub's `X-Hub-Signature-256: sha256=<hex hmac-sha256(secret, body)>`,
/// or GitLab's `X-Gitlab-Token: <secret>`. Both comparisons are constant-time. When both headers
/// are present the GitHub signature decides, since it also authenticates the body.
pub fn verify(headers: &[(String, String)], body: &[u8], secret: &[u8]) -> Result<(), WebhookError> {
    if secret.is_empty() {
        return Err(WebhookError::NoSecret);
    }
    if body.len() > MAX_BODY_BYTES {
        return Err(WebhookError::BodyTooLarge);
    }
    if let Some(sig) = header(headers, "x-hub-signature-256") {
        let hex_sig = sig.strip_prefix("sha256=").ok_or(WebhookError::BadSignature)?;
        let sig = hex::decode(hex_sig).map_err(|_| WebhookError::BadSignature)?;
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| WebhookError::BadSignature)?;
        mac.update(body);
        // `verify_slice` compares in constant time.
        return mac.verify_slice(&sig).map_err(|_| WebhookError::BadSignature);
    }
    if let Some(token) = header(headers, "x-gitlab-token") {
        // Hash both sides first so the comparison does not leak the secret's length either.
        let given = Sha256::digest(token.as_bytes());
        let want = Sha256::digest(secret);
        return if bool::from(given.ct_eq(&want)) {
            Ok(())
        } else {
            Err(WebhookError::BadSignature)
        };
    }
    Err(WebhookError::MissingSignature)
}

/// A token bucket: at most `burst` deliveries at once, refilled at `per_minute`. It guards the
/// fetch path (each accepted delivery costs a network round trip to the Git host), not the
/// signature check, which is cheap.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    burst: f64,
    per_second: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl RateLimiter {
    pub fn new(burst: u32, per_minute: u32) -> Self {
        RateLimiter {
            burst: f64::from(burst),
            per_second: f64::from(per_minute) / 60.0,
            tokens: f64::from(burst),
            last: None,
        }
    }

    /// Takes one token at `now`, or `Err(RateLimited)` when the bucket is empty. A `now` earlier
    /// than the previous call (callers racing for the limiter) refills nothing.
    pub fn check(&mut self, now: Instant) -> Result<(), WebhookError> {
        if let Some(last) = self.last {
            let elapsed = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        }
        if self.last.is_none_or(|last| now > last) {
            self.last = Some(now);
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(WebhookError::RateLimited)
        }
    }
}

/// Remembers the last `capacity` delivery ids (`X-GitHub-Delivery`, `X-Gitlab-Event-UUID`) so a
/// captured delivery cannot be replayed to force fetches. Call it after [`verify`], so only
/// authentic deliveries occupy its memory. A delivery without an id is let through: the id is
/// not covered by the signature anyway, so requiring it would add no protection.
#[derive(Debug, Clone)]
pub struct ReplayGuard {
    capacity: usize,
    order: VecDeque<String>,
    seen: HashSet<String>,
}

impl ReplayGuard {
    pub fn new(capacity: usize) -> Self {
        ReplayGuard {
            capacity,
            order: VecDeque::with_capacity(capacity.min(1024)),
            seen: HashSet::with_capacity(capacity.min(1024)),
        }
    }

    pub fn check(&mut self, headers: &[(String, String)]) -> Result<(), WebhookError> {
        let Some(id) =
            header(headers, "x-github-delivery").or_else(|| header(headers, "x-gitlab-event-uuid"))
        else {
            return Ok(());
        };
        if id.len() > MAX_DELIVERY_ID_LEN {
            return Err(WebhookError::BadDeliveryId);
        }
        if self.seen.contains(id) {
            return Err(WebhookError::Replayed);
        }
        if self.capacity == 0 {
            return Ok(());
        }
        while self.order.len() >= self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.order.push_back(id.to_string());
        self.seen.insert(id.to_string());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const SECRET: &[u8] = b"It's a Secret to Everybody";
    const BODY: &[u8] = b"Hello, World!";
    /// The example from GitHub's "Validating webhook deliveries" documentation.
    const GITHUB_EXAMPLE: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn github_signature_good_matches_the_documented_example() {
        assert_eq!(
            verify(&h(&[("X-Hub-Signature-256", GITHUB_EXAMPLE)]), BODY, SECRET),
            Ok(())
        );
        // Header names are case-insensitive.
        assert_eq!(
            verify(&h(&[("x-hub-signature-256", GITHUB_EXAMPLE)]), BODY, SECRET),
            Ok(())
        );
    }

    #[test]
    fn github_signature_bad_body_secret_or_prefix_is_refused() {
        let sig = h(&[("X-Hub-Signature-256", GITHUB_EXAMPLE)]);
        assert_eq!(
            verify(&sig, b"Hello, World?", SECRET),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(verify(&sig, BODY, b"other"), Err(WebhookError::BadSignature));
        let sha1 = GITHUB_EXAMPLE.replace("sha256=", "sha1=");
        assert_eq!(
            verify(&h(&[("X-Hub-Signature-256", &sha1)]), BODY, SECRET),
            Err(WebhookError::BadSignature)
        );
        let bare = GITHUB_EXAMPLE.trim_start_matches("sha256=");
        assert_eq!(
            verify(&h(&[("X-Hub-Signature-256", bare)]), BODY, SECRET),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify(&h(&[("X-Hub-Signature-256", "sha256=zz")]), BODY, SECRET),
            Err(WebhookError::BadSignature)
        );
    }

    #[test]
    fn missing_signature_empty_secret_and_big_body_are_refused() {
        assert_eq!(
            verify(&h(&[("Content-Type", "application/json")]), BODY, SECRET),
            Err(WebhookError::MissingSignature)
        );
        assert_eq!(
            verify(&h(&[("X-Gitlab-Token", "")]), BODY, b""),
            Err(WebhookError::NoSecret)
        );
        let big = vec![b'x'; MAX_BODY_BYTES + 1];
        assert_eq!(
            verify(&h(&[("X-Hub-Signature-256", GITHUB_EXAMPLE)]), &big, SECRET),
            Err(WebhookError::BodyTooLarge)
        );
        assert_eq!(WebhookError::BadSignature.code(), "bad_signature");
    }

    #[test]
    fn gitlab_token_is_compared_whole() {
        let secret = "It's a Secret to Everybody";
        assert_eq!(verify(&h(&[("X-Gitlab-Token", secret)]), BODY, SECRET), Ok(()));
        assert_eq!(verify(&h(&[("x-gitlab-token", secret)]), b"", SECRET), Ok(()));
        for wrong in ["It's a Secret", "It's a Secret to Everybody!", "", "x"] {
            assert_eq!(
                verify(&h(&[("X-Gitlab-Token", wrong)]), BODY, SECRET),
                Err(WebhookError::BadSignature),
                "{wrong}"
            );
        }
    }

    #[test]
    fn rate_limiter_allows_a_burst_then_refills_over_time() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(3, 60); // one token per second
        for _ in 0..3 {
            assert_eq!(rl.check(t0), Ok(()));
        }
        assert_eq!(rl.check(t0), Err(WebhookError::RateLimited));
        assert_eq!(
            rl.check(t0 + Duration::from_millis(500)),
            Err(WebhookError::RateLimited)
        );
        assert_eq!(rl.check(t0 + Duration::from_millis(1100)), Ok(()));
        assert_eq!(
            rl.check(t0 + Duration::from_millis(1200)),
            Err(WebhookError::RateLimited)
        );
        // A long quiet period refills to the burst, never beyond it.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(rl.check(later), Ok(()));
        }
        assert_eq!(rl.check(later), Err(WebhookError::RateLimited));
        // A time earlier than the last call neither refills nor panics.
        assert_eq!(rl.check(t0), Err(WebhookError::RateLimited));
        assert_eq!(RateLimiter::new(0, 60).check(t0), Err(WebhookError::RateLimited));
    }

    #[test]
    fn replay_guard_remembers_the_last_ids() {
        let mut g = ReplayGuard::new(2);
        let d = |id: &str| h(&[("X-GitHub-Delivery", id)]);
        assert_eq!(g.check(&d("a")), Ok(()));
        assert_eq!(g.check(&d("a")), Err(WebhookError::Replayed));
        assert_eq!(
            g.check(&h(&[("X-Gitlab-Event-UUID", "a")])),
            Err(WebhookError::Replayed)
        );
        assert_eq!(g.check(&d("b")), Ok(()));
        assert_eq!(g.check(&d("c")), Ok(()));
        // "a" fell out of the window of two.
        assert_eq!(g.check(&d("a")), Ok(()));
        assert_eq!(g.check(&d("c")), Err(WebhookError::Replayed));
        assert_eq!(g.check(&h(&[])), Ok(()));
        assert_eq!(g.check(&h(&[])), Ok(()));
        assert_eq!(g.check(&d(&"x".repeat(200))), Err(WebhookError::BadDeliveryId));
    }
}
