//! Removes credentials from error texts before they are logged or returned.
//!
//! object_store's errors print the request URL (reqwest includes it in its `Display`), the response body of the
//! store (S3 echoes the access key ID in `SignatureDoesNotMatch` / `InvalidAccessKeyId` bodies, and the string to
//! sign) and, for presigned requests, the query string with the signature and credential scope. The configured
//! secrets are replaced verbatim and the values of well-known signing parameters are cut out.

/// Query parameters and XML elements whose values are credentials or signatures.
const SENSITIVE_PARAMS: &[&str] = &[
    "x-amz-credential=",
    "x-amz-signature=",
    "x-amz-security-token=",
    "awsaccesskeyid=",
    "signature=",
    "x-goog-credential=",
    "x-goog-signature=",
    "googleaccessid=",
    "access_token=",
    "assertion=",
    "credential=",
];

/// XML elements of S3 error bodies that quote credentials or what was signed.
const SENSITIVE_ELEMENTS: &[&str] = &[
    "AWSAccessKeyId",
    "SignatureProvided",
    "StringToSign",
    "StringToSignBytes",
    "CanonicalRequest",
    "CanonicalRequestBytes",
];

/// Secrets shorter than this are not replaced verbatim: they would blank out ordinary words. Real access keys and
/// secrets are far longer.
const MIN_SECRET_LEN: usize = 6;

/// Returns `text` with every secret in `secrets` and every signing parameter value replaced by `***`.
pub(crate) fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for secret in secrets {
        if secret.len() >= MIN_SECRET_LEN {
            out = out.replace(secret.as_str(), "***");
        }
    }
    for element in SENSITIVE_ELEMENTS {
        out = redact_element(&out, element);
    }
    for param in SENSITIVE_PARAMS {
        out = redact_param(&out, param);
    }
    out
}

/// Replaces the value after every case-insensitive occurrence of `name` (which ends in `=`) up to a delimiter.
fn redact_param(text: &str, name: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    while let Some(found) = lower[pos..].find(name) {
        let value_start = pos + found + name.len();
        out.push_str(&text[pos..value_start]);
        let value_len = text[value_start..]
            .find(['&', '"', '\'', ' ', ')', ',', '<', '>', '\n', '\r', '\t', '\\'])
            .unwrap_or(text.len() - value_start);
        if value_len > 0 {
            out.push_str("***");
        }
        pos = value_start + value_len;
    }
    out.push_str(&text[pos..]);
    out
}

/// Replaces the content of every `<element>…</element>`.
fn redact_element(text: &str, element: &str) -> String {
    let open = format!("<{element}>");
    let close = format!("</{element}>");
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    while let Some(found) = text[pos..].find(&open) {
        let content_start = pos + found + open.len();
        out.push_str(&text[pos..content_start]);
        match text[content_start..].find(&close) {
            Some(end) => {
                out.push_str("***");
                pos = content_start + end;
            }
            None => {
                // A truncated body: drop everything after the opening tag.
                out.push_str("***");
                pos = text.len();
            }
        }
    }
    out.push_str(&text[pos..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_configured_secrets() {
        let secrets = vec!["AKIAEXAMPLEKEY".to_string(), "s3cr3t/Key+Value".to_string(), "ab".to_string()];
        let text = "InvalidAccessKeyId: AKIAEXAMPLEKEY with s3cr3t/Key+Value, about ab";
        assert_eq!(scrub(text, &secrets), "InvalidAccessKeyId: *** with ***, about ab");
    }

    #[test]
    fn cuts_signing_parameters() {
        let text = "error sending request for url (http://h/b/k?X-Amz-Algorithm=AWS4&X-Amz-Credential=AKID%2F2024&X-Amz-Signature=abcdef&partNumber=1)";
        let s = scrub(text, &[]);
        assert!(!s.contains("AKID"), "{s}");
        assert!(!s.contains("abcdef"), "{s}");
        assert!(s.contains("partNumber=1"), "{s}");
        assert!(s.contains("X-Amz-Algorithm=AWS4"), "{s}");
    }

    #[test]
    fn cuts_s3_error_body_elements() {
        let body = "<Error><Code>SignatureDoesNotMatch</Code><AWSAccessKeyId>AKIDX</AWSAccessKeyId>\
                    <StringToSign>AWS4-HMAC-SHA256\n2024</StringToSign><SignatureProvided>ff00</SignatureProvided></Error>";
        let s = scrub(body, &[]);
        assert!(!s.contains("AKIDX") && !s.contains("ff00") && !s.contains("2024"), "{s}");
        assert!(s.contains("SignatureDoesNotMatch"), "{s}");
        assert_eq!(scrub("<StringToSign>abc", &[]), "<StringToSign>***");
    }
}
