//! SMTP AUTH (RFC 4954) with PLAIN (RFC 4616) and LOGIN, pure: the
//! challenges, the client's base64 answers decoded, and who may in.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Who may authenticate.
#[derive(Clone, Debug, Default)]
pub struct AuthPolicy {
    /// `USER` to `PASSWORD` (from `--auth-file`); empty with `accept_any`.
    pub users: HashMap<String, String>,
    /// Anyone, with any password (`--auth-accept-any`).
    pub accept_any: bool,
    /// AUTH before STARTTLS (or without TLS at all) is allowed.
    pub allow_insecure: bool,
}

impl AuthPolicy {
    /// Whether `user` may in with `pass`.
    pub fn admits(&self, user: &str, pass: &str) -> bool {
        self.accept_any || self.users.get(user).is_some_and(|p| p == pass)
    }
}

/// Where an exchange of challenges stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// PLAIN, waiting for its one answer.
    Plain,
    /// LOGIN, waiting for the user name.
    LoginUser,
    /// LOGIN, waiting for the password of this user.
    LoginPass(String),
}

/// What the client's answer leads to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Another challenge (334 TEXT), and the step it waits in.
    Again(String, Step),
    /// The credentials, to be judged.
    Credentials(String, String),
    /// The client gave up (`*`), or the answer is not base64 or not the
    /// mechanism's: the reply to send.
    Refused(String),
}

/// The first challenge's line (`334 ` and base64 text).
pub fn challenge(text: &str) -> String {
    format!("334 {}\r\n", STANDARD.encode(text))
}

/// Where a mechanism starts, given its initial response (if any):
/// PLAIN's one answer, or LOGIN's user name.
pub fn start(plain: bool, initial: &str) -> Answer {
    match (plain, initial) {
        (true, "") => Answer::Again("334 \r\n".into(), Step::Plain),
        (false, "") => Answer::Again(challenge("Username:"), Step::LoginUser),
        (_, text) => {
            let step = if plain { Step::Plain } else { Step::LoginUser };
            answer(&step, text.as_bytes())
        }
    }
}

/// The client's answer (a base64 line, CRLF stripped) in `step`.
pub fn answer(step: &Step, line: &[u8]) -> Answer {
    let line = line
        .strip_suffix(b"\r\n")
        .or(line.strip_suffix(b"\n"))
        .unwrap_or(line);
    if line == b"*" {
        return Answer::Refused("501 5.7.0 Authentication cancelled\r\n".into());
    }
    // RFC 4954: "=" is an empty initial response.
    let decoded = if line == b"=" {
        Ok(Vec::new())
    } else {
        STANDARD.decode(line)
    };
    let Ok(decoded) = decoded else {
        return Answer::Refused("501 5.5.2 Cannot decode the response as base64\r\n".into());
    };
    let text = String::from_utf8_lossy(&decoded).into_owned();
    match step {
        Step::Plain => {
            // authzid NUL authcid NUL password
            let mut parts = text.splitn(3, '\0');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(_), Some(user), Some(pass)) => Answer::Credentials(user.into(), pass.into()),
                _ => Answer::Refused("501 5.5.2 Not a PLAIN response\r\n".into()),
            }
        }
        Step::LoginUser => Answer::Again(challenge("Password:"), Step::LoginPass(text)),
        Step::LoginPass(user) => Answer::Credentials(user.clone(), text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_with_and_without_an_initial_response() {
        let b64 = STANDARD.encode("\0ann\0secret");
        assert_eq!(
            start(true, &b64),
            Answer::Credentials("ann".into(), "secret".into())
        );
        assert_eq!(
            start(true, ""),
            Answer::Again("334 \r\n".into(), Step::Plain)
        );
        assert_eq!(
            answer(&Step::Plain, format!("{b64}\r\n").as_bytes()),
            Answer::Credentials("ann".into(), "secret".into())
        );
        assert!(matches!(
            answer(&Step::Plain, b"not base64!"),
            Answer::Refused(_)
        ));
        assert!(matches!(answer(&Step::Plain, b"*"), Answer::Refused(r) if r.starts_with("501")));
    }

    #[test]
    fn login_asks_twice() {
        let Answer::Again(first, step) = start(false, "") else {
            panic!("a challenge")
        };
        assert_eq!(first, "334 VXNlcm5hbWU6\r\n");
        let Answer::Again(second, step) = answer(&step, STANDARD.encode("bob").as_bytes()) else {
            panic!("a second challenge")
        };
        assert_eq!(second, "334 UGFzc3dvcmQ6\r\n");
        assert_eq!(
            answer(&step, STANDARD.encode("pw").as_bytes()),
            Answer::Credentials("bob".into(), "pw".into())
        );
    }

    #[test]
    fn who_is_admitted() {
        let mut policy = AuthPolicy::default();
        policy.users.insert("ann".into(), "secret".into());
        assert!(policy.admits("ann", "secret"));
        assert!(!policy.admits("ann", "guess"));
        policy.accept_any = true;
        assert!(policy.admits("anyone", "anything"));
    }
}
