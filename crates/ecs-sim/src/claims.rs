//! What every signed request claims about itself, whatever its signature style (v1 parameters
//! or V3 headers): read by [`crate::v1`] and [`crate::v3`], checked by [`crate::auth`].

/// The common values every signed request carries, whatever the signature style.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The AccessKey ID.
    pub access_key_id: String,
    /// `SignatureNonce` / `x-acs-signature-nonce`.
    pub nonce: String,
    /// `Timestamp` / `x-acs-date`.
    pub timestamp: String,
    /// `SecurityToken` / `x-acs-security-token`.
    pub security_token: Option<String>,
}
