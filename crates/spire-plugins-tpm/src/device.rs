//! A TPM 2.0 reached through a character device (`/dev/tpmrm0`) or a unix socket that speaks
//! the raw command protocol (swtpm's `unixio` server), as go-tpm's `OpenTPM`. Commands are
//! marshalled here, only those `tpm_devid` uses, with password sessions and one policy
//! session; no resource manager is assumed, so every transient object is flushed.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileTypeExt as _;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::tpm2::{Reader, Tpm2Error, Writer, alg, attr};

const ST_NO_SESSIONS: u16 = 0x8001;
const ST_SESSIONS: u16 = 0x8002;
/// `TPM_RS_PW`, the password session.
const RS_PW: u32 = 0x4000_0009;
pub(crate) const RH_OWNER: u32 = 0x4000_0001;
pub(crate) const RH_NULL: u32 = 0x4000_0007;
pub(crate) const RH_ENDORSEMENT: u32 = 0x4000_000B;
pub(crate) const RH_PLATFORM: u32 = 0x4000_000C;

mod cc {
    pub(super) const NV_READ: u32 = 0x14E;
    pub(super) const ACTIVATE_CREDENTIAL: u32 = 0x147;
    pub(super) const CERTIFY: u32 = 0x148;
    pub(super) const POLICY_SECRET: u32 = 0x151;
    pub(super) const CREATE: u32 = 0x153;
    pub(super) const LOAD: u32 = 0x157;
    pub(super) const SIGN: u32 = 0x15D;
    pub(super) const FLUSH_CONTEXT: u32 = 0x165;
    pub(super) const NV_READ_PUBLIC: u32 = 0x169;
    pub(super) const START_AUTH_SESSION: u32 = 0x176;
    pub(super) const HASH: u32 = 0x17D;
    pub(super) const CREATE_PRIMARY: u32 = 0x131;
}

/// Largest response the TPM sends (TPM 2.0 devices use at most 4 KiB).
const MAX_RESPONSE: usize = 8192;
/// Bound on each read or write to a socket TPM (primary RSA keys take seconds to derive).
const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// `TPM_RC_RETRY`, `TPM_RC_YIELDED`, `TPM_RC_TESTING`: try again.
const RETRY_CODES: [u32; 3] = [0x922, 0x908, 0x90A];
const MAX_ATTEMPTS: usize = 10;

/// A TPM failure.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TpmError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("malformed TPM response: {0}")]
    Response(#[from] Tpm2Error),
    #[error("TPM error 0x{code:03x} in {command}")]
    Code { command: &'static str, code: u32 },
    #[error("{0}")]
    Other(String),
}

enum Channel {
    Device(File),
    Socket(UnixStream),
}

/// An open TPM.
pub(crate) struct Tpm {
    channel: Channel,
    sleep: fn(Duration),
}

impl std::fmt::Debug for Tpm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tpm").finish_non_exhaustive()
    }
}

/// Largest buffer a `TPM2B_*` this client sends may hold (TPM 2.0 buffers are at most a
/// few KiB; anything larger is refused before it reaches the TPM).
pub(crate) const MAX_TPM2B: usize = 4096;

fn check_len(what: &str, v: &[u8]) -> Result<(), TpmError> {
    if v.len() > MAX_TPM2B {
        return Err(TpmError::Other(format!(
            "{what} is {} bytes, more than {MAX_TPM2B}",
            v.len()
        )));
    }
    Ok(())
}

/// An authorization for one handle of a command.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Auth<'a> {
    Password(&'a [u8]),
    /// A policy session whose policy is already satisfied (no HMAC).
    Policy(u32),
}

/// The results of `TPM2_CreatePrimary` / `TPM2_Create` this attestor uses.
#[derive(Debug)]
pub(crate) struct Created {
    pub(crate) handle: u32,
    pub(crate) public: Vec<u8>,
    pub(crate) private: Vec<u8>,
}

impl Tpm {
    /// Opens a TPM device file or a unix socket.
    pub(crate) fn open(path: &Path) -> Result<Self, TpmError> {
        let meta = std::fs::metadata(path)?;
        let channel = if meta.file_type().is_socket() {
            let s = UnixStream::connect(path)?;
            s.set_read_timeout(Some(IO_TIMEOUT))?;
            s.set_write_timeout(Some(IO_TIMEOUT))?;
            Channel::Socket(s)
        } else {
            Channel::Device(OpenOptions::new().read(true).write(true).open(path)?)
        };
        Ok(Self {
            channel,
            sleep: std::thread::sleep,
        })
    }

    fn transact(&mut self, command: &[u8]) -> Result<Vec<u8>, TpmError> {
        let mut buf = vec![0u8; MAX_RESPONSE];
        let mut n = 0;
        match &mut self.channel {
            Channel::Device(f) => {
                f.write_all(command)?;
                // A TPM character device returns the whole response in one read.
                n = f.read(&mut buf)?;
            }
            Channel::Socket(s) => {
                s.write_all(command)?;
                loop {
                    let got = s.read(&mut buf[n..])?;
                    if got == 0 {
                        return Err(TpmError::Other("TPM closed the connection".into()));
                    }
                    n += got;
                    if n >= 10 {
                        let size = u32::from_be_bytes([buf[2], buf[3], buf[4], buf[5]]) as usize;
                        if !(10..=MAX_RESPONSE).contains(&size) {
                            return Err(TpmError::Other(format!(
                                "TPM response size {size} out of range"
                            )));
                        }
                        if n >= size {
                            break;
                        }
                    }
                }
            }
        }
        if n < 10 {
            return Err(TpmError::Other("short TPM response".into()));
        }
        let size = u32::from_be_bytes([buf[2], buf[3], buf[4], buf[5]]) as usize;
        if !(10..=n).contains(&size) {
            return Err(TpmError::Other(format!(
                "TPM response size {size} does not match the {n} bytes read"
            )));
        }
        buf.truncate(size);
        Ok(buf)
    }

    /// Runs one command; returns the response handles and parameters.
    fn run(
        &mut self,
        name: &'static str,
        code: u32,
        handles: &[u32],
        auths: &[Auth<'_>],
        params: &[u8],
    ) -> Result<(Vec<u32>, Vec<u8>), TpmError> {
        let mut body = Writer::default();
        for h in handles {
            body.u32(*h);
        }
        if !auths.is_empty() {
            let mut area = Writer::default();
            for a in auths {
                match a {
                    Auth::Password(pw) => {
                        check_len("password", pw)?;
                        area.u32(RS_PW).tpm2b(&[]).u8(1).tpm2b(pw);
                    }
                    Auth::Policy(h) => {
                        area.u32(*h).tpm2b(&[]).u8(0).tpm2b(&[]);
                    }
                }
            }
            body.u32(area.0.len() as u32).raw(&area.0);
        }
        body.raw(params);
        let tag = if auths.is_empty() {
            ST_NO_SESSIONS
        } else {
            ST_SESSIONS
        };
        let mut cmd = Writer::default();
        cmd.u16(tag)
            .u32((body.0.len() + 10) as u32)
            .u32(code)
            .raw(&body.0);
        let mut attempt = 0;
        let resp = loop {
            attempt += 1;
            let resp = self.transact(&cmd.0)?;
            let mut r = Reader::new(&resp);
            let _tag = r.u16()?;
            let _size = r.u32()?;
            let rc = r.u32()?;
            if rc == 0 {
                break resp;
            }
            if RETRY_CODES.contains(&rc) && attempt < MAX_ATTEMPTS {
                (self.sleep)(Duration::from_millis(500));
                continue;
            }
            return Err(TpmError::Code {
                command: name,
                code: rc,
            });
        };
        let mut r = Reader::new(&resp[10..]);
        let out_handles = match code {
            cc::CREATE_PRIMARY | cc::LOAD | cc::START_AUTH_SESSION => vec![r.u32()?],
            _ => vec![],
        };
        let params = if tag == ST_SESSIONS {
            let n = r.u32()? as usize;
            r.bytes(n)?.to_vec()
        } else {
            r.rest().to_vec()
        };
        Ok((out_handles, params))
    }

    fn handle(handles: &[u32]) -> Result<u32, TpmError> {
        handles
            .first()
            .copied()
            .ok_or(TpmError::Response(Tpm2Error::Short))
    }

    /// `TPM2_CreatePrimary` under `hierarchy`.
    pub(crate) fn create_primary(
        &mut self,
        hierarchy: u32,
        hierarchy_auth: &[u8],
        user_auth: &[u8],
        template: &[u8],
    ) -> Result<Created, TpmError> {
        let mut p = Writer::default();
        sensitive_create(&mut p, user_auth);
        p.tpm2b(template).tpm2b(&[]).u32(0);
        let (h, out) = self.run(
            "CreatePrimary",
            cc::CREATE_PRIMARY,
            &[hierarchy],
            &[Auth::Password(hierarchy_auth)],
            &p.0,
        )?;
        let handle = Self::handle(&h)?;
        let mut r = Reader::new(&out);
        let public = r.tpm2b()?.to_vec();
        Ok(Created {
            handle,
            public,
            private: vec![],
        })
    }

    /// `TPM2_Create` of an ordinary key under `parent`.
    pub(crate) fn create(
        &mut self,
        parent: u32,
        parent_auth: &[u8],
        user_auth: &[u8],
        template: &[u8],
    ) -> Result<Created, TpmError> {
        let mut p = Writer::default();
        sensitive_create(&mut p, user_auth);
        p.tpm2b(template).tpm2b(&[]).u32(0);
        let (_, out) = self.run(
            "Create",
            cc::CREATE,
            &[parent],
            &[Auth::Password(parent_auth)],
            &p.0,
        )?;
        let mut r = Reader::new(&out);
        let private = r.tpm2b()?.to_vec();
        let public = r.tpm2b()?.to_vec();
        Ok(Created {
            handle: 0,
            public,
            private,
        })
    }

    /// `TPM2_Load` of a key's blobs under `parent`; returns its handle.
    pub(crate) fn load(
        &mut self,
        parent: u32,
        parent_auth: &[u8],
        public: &[u8],
        private: &[u8],
    ) -> Result<u32, TpmError> {
        check_len("private blob", private)?;
        check_len("public blob", public)?;
        let mut p = Writer::default();
        p.tpm2b(private).tpm2b(public);
        let (h, _) = self.run(
            "Load",
            cc::LOAD,
            &[parent],
            &[Auth::Password(parent_auth)],
            &p.0,
        )?;
        Self::handle(&h)
    }

    /// `TPM2_FlushContext`.
    pub(crate) fn flush(&mut self, handle: u32) -> Result<(), TpmError> {
        self.run(
            "FlushContext",
            cc::FLUSH_CONTEXT,
            &[],
            &[],
            &handle.to_be_bytes(),
        )?;
        Ok(())
    }

    /// `TPM2_Certify`: `signer` attests `object`; returns the `TPMS_ATTEST` and the
    /// marshalled `TPMT_SIGNATURE`.
    pub(crate) fn certify(
        &mut self,
        object: u32,
        object_auth: &[u8],
        signer: u32,
        signer_auth: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>), TpmError> {
        let mut p = Writer::default();
        p.tpm2b(&[]).u16(alg::NULL);
        let (_, out) = self.run(
            "Certify",
            cc::CERTIFY,
            &[object, signer],
            &[Auth::Password(object_auth), Auth::Password(signer_auth)],
            &p.0,
        )?;
        let mut r = Reader::new(&out);
        let attest = r.tpm2b()?.to_vec();
        Ok((attest, r.rest().to_vec()))
    }

    /// `TPM2_Hash` then `TPM2_Sign` with the key's own scheme; returns the `TPMT_SIGNATURE`.
    pub(crate) fn sign(
        &mut self,
        key: u32,
        key_auth: &[u8],
        hash_alg: u16,
        data: &[u8],
    ) -> Result<Vec<u8>, TpmError> {
        if data.len() > 1024 {
            return Err(TpmError::Other("data to sign is too long".into()));
        }
        let mut p = Writer::default();
        p.tpm2b(data).u16(hash_alg).u32(RH_PLATFORM);
        let (_, out) = self.run("Hash", cc::HASH, &[], &[], &p.0)?;
        let mut r = Reader::new(&out);
        let digest = r.tpm2b()?.to_vec();
        let ticket = r.rest().to_vec();
        let mut p = Writer::default();
        p.tpm2b(&digest).u16(alg::NULL).raw(&ticket);
        let (_, out) = self.run("Sign", cc::SIGN, &[key], &[Auth::Password(key_auth)], &p.0)?;
        Ok(out)
    }

    /// `TPM2_StartAuthSession` of an unbound, unsalted SHA-256 policy session, then
    /// `TPM2_PolicySecret` with the endorsement hierarchy's authorization (the default EK
    /// policy). Returns the session handle.
    pub(crate) fn ek_policy_session(&mut self, endorsement_auth: &[u8]) -> Result<u32, TpmError> {
        let mut p = Writer::default();
        p.tpm2b(&[0u8; 16])
            .tpm2b(&[])
            .u8(0x01)
            .u16(alg::NULL)
            .u16(alg::SHA256);
        let (h, _) = self.run(
            "StartAuthSession",
            cc::START_AUTH_SESSION,
            &[RH_NULL, RH_NULL],
            &[],
            &p.0,
        )?;
        let session = Self::handle(&h)?;
        let mut p = Writer::default();
        p.tpm2b(&[]).tpm2b(&[]).tpm2b(&[]).u32(0);
        if let Err(e) = self.run(
            "PolicySecret",
            cc::POLICY_SECRET,
            &[RH_ENDORSEMENT, session],
            &[Auth::Password(endorsement_auth)],
            &p.0,
        ) {
            let _ = self.flush(session);
            return Err(e);
        }
        Ok(session)
    }

    /// `TPM2_ActivateCredential`; the policy session ends with the command.
    pub(crate) fn activate_credential(
        &mut self,
        activate: u32,
        activate_auth: &[u8],
        key: u32,
        session: u32,
        credential: &[u8],
        secret: &[u8],
    ) -> Result<Vec<u8>, TpmError> {
        if let Err(e) =
            check_len("credential", credential).and_then(|()| check_len("secret", secret))
        {
            let _ = self.flush(session);
            return Err(e);
        }
        let mut p = Writer::default();
        p.tpm2b(credential).tpm2b(secret);
        let result = self.run(
            "ActivateCredential",
            cc::ACTIVATE_CREDENTIAL,
            &[activate, key],
            &[Auth::Password(activate_auth), Auth::Policy(session)],
            &p.0,
        );
        match result {
            Ok((_, out)) => Ok(Reader::new(&out).tpm2b()?.to_vec()),
            Err(e) => {
                let _ = self.flush(session);
                Err(e)
            }
        }
    }

    /// Reads a whole NV index with its own (empty) authorization.
    pub(crate) fn nv_read(&mut self, index: u32) -> Result<Vec<u8>, TpmError> {
        let (_, out) = self.run("NV_ReadPublic", cc::NV_READ_PUBLIC, &[index], &[], &[])?;
        let mut r = Reader::new(&out);
        let public = r.tpm2b()?;
        let mut pr = Reader::new(public);
        pr.u32()?; // nvIndex
        pr.u16()?; // nameAlg
        pr.u32()?; // attributes
        pr.tpm2b()?; // authPolicy
        let size = pr.u16()?;
        let mut data = Vec::with_capacity(usize::from(size));
        let mut offset: u16 = 0;
        while offset < size {
            let chunk = (size - offset).min(512);
            let mut p = Writer::default();
            p.u16(chunk).u16(offset);
            let (_, out) = self.run(
                "NV_Read",
                cc::NV_READ,
                &[index, index],
                &[Auth::Password(&[])],
                &p.0,
            )?;
            let part = Reader::new(&out).tpm2b()?.to_vec();
            if part.is_empty() {
                break;
            }
            offset = offset.saturating_add(part.len() as u16);
            data.extend(part);
        }
        Ok(data)
    }
}

fn sensitive_create(w: &mut Writer, user_auth: &[u8]) {
    let mut s = Writer::default();
    s.tpm2b(user_auth).tpm2b(&[]);
    w.tpm2b(&s.0);
}

/// go-tpm-tools' `DefaultEKTemplateRSA`: the TCG default RSA-2048 EK (low range), whose
/// policy is PolicySecret(TPM_RH_ENDORSEMENT).
pub(crate) fn ek_template_rsa() -> Vec<u8> {
    const EK_POLICY: [u8; 32] = [
        0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xB3, 0xF8, 0x1A, 0x90, 0xCC, 0x8D, 0x46, 0xA5, 0xD7,
        0x24, 0xFD, 0x52, 0xD7, 0x6E, 0x06, 0x52, 0x0B, 0x64, 0xF2, 0xA1, 0xDA, 0x1B, 0x33, 0x14,
        0x69, 0xAA,
    ];
    let attrs = attr::FIXED_TPM
        | attr::FIXED_PARENT
        | attr::SENSITIVE_DATA_ORIGIN
        | attr::ADMIN_WITH_POLICY
        | attr::RESTRICTED
        | attr::DECRYPT;
    let mut w = Writer::default();
    w.u16(alg::RSA)
        .u16(alg::SHA256)
        .u32(attrs)
        .tpm2b(&EK_POLICY);
    w.u16(alg::AES).u16(128).u16(alg::CFB).u16(alg::NULL);
    w.u16(2048).u32(0).tpm2b(&[0u8; 256]);
    w.0
}

/// SPIRE's `SRKTemplateHighRSA`: go-tpm-tools' SRK template with an empty unique field.
pub(crate) fn srk_template_rsa() -> Vec<u8> {
    let mut w = Writer::default();
    w.u16(alg::RSA)
        .u16(alg::SHA256)
        .u32(srk_attributes())
        .tpm2b(&[]);
    w.u16(alg::AES).u16(128).u16(alg::CFB).u16(alg::NULL);
    w.u16(2048).u32(0).tpm2b(&[]);
    w.0
}

/// SPIRE's `SRKTemplateHighECC`: NIST P-256 storage key with empty unique points.
pub(crate) fn srk_template_ecc() -> Vec<u8> {
    const CURVE_NIST_P256: u16 = 0x0003;
    let mut w = Writer::default();
    w.u16(alg::ECC)
        .u16(alg::SHA256)
        .u32(srk_attributes())
        .tpm2b(&[]);
    w.u16(alg::AES).u16(128).u16(alg::CFB).u16(alg::NULL);
    w.u16(CURVE_NIST_P256).u16(alg::NULL).tpm2b(&[]).tpm2b(&[]);
    w.0
}

fn srk_attributes() -> u32 {
    attr::DECRYPT
        | attr::RESTRICTED
        | attr::FIXED_TPM
        | attr::FIXED_PARENT
        | attr::SENSITIVE_DATA_ORIGIN
        | attr::USER_WITH_AUTH
        | attr::NO_DA
}

/// go-tpm-tools' `AKTemplateRSA`: a restricted RSA-2048 RSASSA-SHA256 signing key.
pub(crate) fn ak_template_rsa() -> Vec<u8> {
    let attrs = attr::SIGN
        | attr::RESTRICTED
        | attr::FIXED_TPM
        | attr::FIXED_PARENT
        | attr::SENSITIVE_DATA_ORIGIN
        | attr::USER_WITH_AUTH;
    let mut w = Writer::default();
    w.u16(alg::RSA).u16(alg::SHA256).u32(attrs).tpm2b(&[]);
    w.u16(alg::NULL).u16(alg::RSASSA).u16(alg::SHA256);
    w.u16(2048).u32(0).tpm2b(&[]);
    w.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tpm2::Public;

    #[test]
    fn templates_decode_as_spire_builds_them() {
        let ek = Public::decode(&ek_template_rsa()).unwrap();
        assert_eq!(ek.sym_bits, 128);
        assert_eq!(ek.attributes & attr::USER_WITH_AUTH, 0);
        let srk = Public::decode(&srk_template_rsa()).unwrap();
        assert_ne!(srk.attributes & attr::NO_DA, 0);
        Public::decode(&srk_template_ecc()).unwrap();
        let ak = Public::decode(&ak_template_rsa()).unwrap();
        assert_eq!(ak.signing_scheme().unwrap().hash, alg::SHA256);
    }

    /// A fake TPM on a socket pair: answers each command with `reply`.
    fn fake(reply: Vec<u8>) -> Tpm {
        let (ours, theirs) = UnixStream::pair().unwrap();
        std::thread::spawn(move || {
            let mut theirs = theirs;
            let mut buf = [0u8; 4096];
            while let Ok(n) = theirs.read(&mut buf) {
                if n == 0 || theirs.write_all(&reply).is_err() {
                    break;
                }
            }
        });
        Tpm {
            channel: Channel::Socket(ours),
            sleep: |_| {},
        }
    }

    #[test]
    fn tpm_error_codes_and_bad_responses_are_errors() {
        // TPM_RC_AUTH_FAIL-style code (0x98e) on a FlushContext.
        let mut t = fake(vec![0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x09, 0x8e]);
        let err = t.flush(0x8000_0000).unwrap_err();
        assert_eq!(err.to_string(), "TPM error 0x98e in FlushContext");
        // A response claiming more bytes than the limit.
        let mut t = fake(vec![0x80, 0x01, 0xff, 0, 0, 10, 0, 0, 0, 0]);
        assert!(t.flush(1).unwrap_err().to_string().contains("out of range"));
        // Retry codes are retried, then reported.
        let mut t = fake(vec![0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x09, 0x22]);
        assert_eq!(
            t.flush(1).unwrap_err().to_string(),
            "TPM error 0x922 in FlushContext"
        );
        // Oversized inputs never reach the TPM.
        let mut t = fake(vec![0x80, 0x01, 0, 0, 0, 10, 0, 0, 0, 0]);
        assert!(t.load(1, &[], &[0; 5000], &[]).is_err());
        t.flush(1).unwrap();
    }

    #[test]
    fn ek_policy_is_policy_secret_of_endorsement() {
        // PolicySecret digest: H(H(0^32 || TPM_CC_PolicySecret || TPM_RH_ENDORSEMENT)).
        let mut m = vec![0u8; 32];
        m.extend(cc::POLICY_SECRET.to_be_bytes());
        m.extend(RH_ENDORSEMENT.to_be_bytes());
        let d1 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &m);
        let d2 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, d1.as_ref());
        let t = ek_template_rsa();
        assert_eq!(&t[10..42], d2.as_ref());
    }
}
