//! TPM 2.0 structures the attestor exchanges, in the TPM's big-endian wire encoding
//! (TPM 2.0 Library Part 2), and the software half of credential activation
//! (`TPM2_MakeCredential` done off-TPM, as go-tpm's `credactivation.Generate`).
//!
//! Only what `tpm_devid` needs: `TPMT_PUBLIC` of RSA and ECC keys, `TPMS_ATTEST` of a
//! certification, `TPMT_SIGNATURE`, names, KDFa.

use aws_lc_rs::{digest, hmac};

/// `TPM_ALG_ID` values.
pub(crate) mod alg {
    pub(crate) const RSA: u16 = 0x0001;
    pub(crate) const SHA1: u16 = 0x0004;
    pub(crate) const AES: u16 = 0x0006;
    pub(crate) const SHA256: u16 = 0x000B;
    pub(crate) const SHA384: u16 = 0x000C;
    pub(crate) const SHA512: u16 = 0x000D;
    pub(crate) const NULL: u16 = 0x0010;
    pub(crate) const RSASSA: u16 = 0x0014;
    pub(crate) const RSAES: u16 = 0x0015;
    pub(crate) const RSAPSS: u16 = 0x0016;
    pub(crate) const ECDSA: u16 = 0x0018;
    pub(crate) const ECDAA: u16 = 0x001A;
    pub(crate) const ECC: u16 = 0x0023;
    pub(crate) const CFB: u16 = 0x0043;
}

/// `TPMA_OBJECT` bits.
pub(crate) mod attr {
    pub(crate) const FIXED_TPM: u32 = 1 << 1;
    pub(crate) const FIXED_PARENT: u32 = 1 << 4;
    pub(crate) const SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
    pub(crate) const USER_WITH_AUTH: u32 = 1 << 6;
    pub(crate) const ADMIN_WITH_POLICY: u32 = 1 << 7;
    pub(crate) const NO_DA: u32 = 1 << 10;
    pub(crate) const RESTRICTED: u32 = 1 << 16;
    pub(crate) const DECRYPT: u32 = 1 << 17;
    pub(crate) const SIGN: u32 = 1 << 18;
}

/// `TPM_GENERATED_VALUE`, the magic of every TPM-made attestation.
const GENERATED_VALUE: u32 = 0xff54_4347;
/// `TPM_ST_ATTEST_CERTIFY`.
const ST_ATTEST_CERTIFY: u16 = 0x8017;

/// A malformed or unsupported TPM structure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Tpm2Error {
    #[error("unexpected end of data")]
    Short,
    #[error("{0} trailing bytes")]
    Trailing(usize),
    #[error("unsupported key type 0x{0:04x}")]
    KeyType(u16),
    #[error("unsupported hash algorithm 0x{0:04x}")]
    Hash(u16),
    #[error("{0}")]
    Invalid(&'static str),
}

/// Reads TPM big-endian fields.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }
    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], Tpm2Error> {
        if self.buf.len() < n {
            return Err(Tpm2Error::Short);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    pub(crate) fn u16(&mut self) -> Result<u16, Tpm2Error> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    pub(crate) fn u32(&mut self) -> Result<u32, Tpm2Error> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, Tpm2Error> {
        let hi = self.u32()?;
        let lo = self.u32()?;
        Ok((u64::from(hi) << 32) | u64::from(lo))
    }
    /// A `TPM2B_*`: a 16-bit size, then that many bytes.
    pub(crate) fn tpm2b(&mut self) -> Result<&'a [u8], Tpm2Error> {
        let n = self.u16()?;
        self.bytes(usize::from(n))
    }
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }
    pub(crate) fn finish(&self) -> Result<(), Tpm2Error> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(Tpm2Error::Trailing(self.buf.len()))
        }
    }
}

/// Writes TPM big-endian fields.
#[derive(Debug, Default)]
pub(crate) struct Writer(pub(crate) Vec<u8>);

impl Writer {
    pub(crate) fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub(crate) fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub(crate) fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub(crate) fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.0.extend_from_slice(v);
        self
    }
    /// A `TPM2B_*`; callers keep buffers under 64 KiB (TPM buffers are at most a few KiB).
    pub(crate) fn tpm2b(&mut self, v: &[u8]) -> &mut Self {
        let n = u16::try_from(v.len()).unwrap_or(u16::MAX);
        self.u16(n);
        self.raw(&v[..usize::from(n)])
    }
}

/// A signing or encryption scheme (`TPMT_*_SCHEME`); `hash` is NULL when it has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scheme {
    pub(crate) alg: u16,
    pub(crate) hash: u16,
}

/// The key-type-specific half of a `TPMT_PUBLIC`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyParams {
    Rsa {
        scheme: Scheme,
        key_bits: u16,
        exponent: u32,
        modulus: Vec<u8>,
    },
    Ecc {
        scheme: Scheme,
        curve: u16,
        x: Vec<u8>,
        y: Vec<u8>,
    },
}

/// A decoded `TPMT_PUBLIC`, with the bytes it came from (its name hashes those).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Public {
    pub(crate) raw: Vec<u8>,
    pub(crate) name_alg: u16,
    pub(crate) attributes: u32,
    /// `TPMT_SYM_DEF_OBJECT` key bits (0 when NULL).
    pub(crate) sym_bits: u16,
    pub(crate) params: KeyParams,
}

fn read_scheme(r: &mut Reader<'_>) -> Result<Scheme, Tpm2Error> {
    let alg = r.u16()?;
    let hash = match alg {
        alg::NULL | alg::RSAES => alg::NULL,
        alg::ECDAA => {
            let h = r.u16()?;
            r.u16()?; // count
            h
        }
        _ => r.u16()?,
    };
    Ok(Scheme { alg, hash })
}

impl Public {
    /// Decodes a marshalled `TPMT_PUBLIC` (go-tpm's `DecodePublic`), RSA and ECC keys only.
    pub(crate) fn decode(raw: &[u8]) -> Result<Self, Tpm2Error> {
        let mut r = Reader::new(raw);
        let kind = r.u16()?;
        let name_alg = r.u16()?;
        let attributes = r.u32()?;
        let _auth_policy = r.tpm2b()?;
        if kind != alg::RSA && kind != alg::ECC {
            return Err(Tpm2Error::KeyType(kind));
        }
        let sym_alg = r.u16()?;
        let sym_bits = if sym_alg == alg::NULL {
            0
        } else {
            let bits = r.u16()?;
            r.u16()?; // mode
            bits
        };
        let scheme = read_scheme(&mut r)?;
        let params = if kind == alg::RSA {
            let key_bits = r.u16()?;
            let exponent = r.u32()?;
            let modulus = r.tpm2b()?.to_vec();
            KeyParams::Rsa {
                scheme,
                key_bits,
                exponent,
                modulus,
            }
        } else {
            let curve = r.u16()?;
            let kdf = r.u16()?;
            if kdf != alg::NULL {
                r.u16()?;
            }
            let x = r.tpm2b()?.to_vec();
            let y = r.tpm2b()?.to_vec();
            KeyParams::Ecc {
                scheme,
                curve,
                x,
                y,
            }
        };
        r.finish()?;
        Ok(Self {
            raw: raw.to_vec(),
            name_alg,
            attributes,
            sym_bits,
            params,
        })
    }

    /// The object's name digest: H_nameAlg(TPMT_PUBLIC).
    pub(crate) fn name_digest(&self) -> Result<Vec<u8>, Tpm2Error> {
        Ok(digest::digest(hash_alg(self.name_alg)?, &self.raw)
            .as_ref()
            .to_vec())
    }

    /// The object's `TPM2B_NAME` contents: nameAlg || digest.
    pub(crate) fn name(&self) -> Result<Vec<u8>, Tpm2Error> {
        let mut out = self.name_alg.to_be_bytes().to_vec();
        out.extend(self.name_digest()?);
        Ok(out)
    }

    /// The signing scheme (RSA or ECC) of a key with the `sign` attribute.
    pub(crate) fn signing_scheme(&self) -> Result<Scheme, &'static str> {
        if self.attributes & attr::SIGN == 0 {
            return Err("not a signing key");
        }
        Ok(match &self.params {
            KeyParams::Rsa { scheme, .. } | KeyParams::Ecc { scheme, .. } => *scheme,
        })
    }

    /// RSA modulus and exponent (0 in the TPM means 65537), big-endian.
    pub(crate) fn rsa(&self) -> Option<(&[u8], Vec<u8>)> {
        match &self.params {
            KeyParams::Rsa {
                exponent, modulus, ..
            } => {
                let e = if *exponent == 0 { 65537 } else { *exponent };
                let e = e.to_be_bytes();
                let start = e.iter().position(|&b| b != 0).unwrap_or(3);
                Some((modulus.as_slice(), e[start..].to_vec()))
            }
            KeyParams::Ecc { .. } => None,
        }
    }
}

/// The digest algorithm of a TPM hash algorithm ID.
pub(crate) fn hash_alg(id: u16) -> Result<&'static digest::Algorithm, Tpm2Error> {
    Ok(match id {
        alg::SHA1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
        alg::SHA256 => &digest::SHA256,
        alg::SHA384 => &digest::SHA384,
        alg::SHA512 => &digest::SHA512,
        other => return Err(Tpm2Error::Hash(other)),
    })
}

fn hmac_alg(id: u16) -> Result<hmac::Algorithm, Tpm2Error> {
    Ok(match id {
        alg::SHA1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        alg::SHA256 => hmac::HMAC_SHA256,
        alg::SHA384 => hmac::HMAC_SHA384,
        alg::SHA512 => hmac::HMAC_SHA512,
        other => return Err(Tpm2Error::Hash(other)),
    })
}

/// The certified object's name from a `TPMS_ATTEST` of type certify.
pub(crate) fn certified_name(attest: &[u8]) -> Result<Vec<u8>, String> {
    let mut r = Reader::new(attest);
    let err = |e: Tpm2Error| e.to_string();
    let magic = r.u32().map_err(err)?;
    let kind = r.u16().map_err(err)?;
    if magic != GENERATED_VALUE {
        return Err(format!("incorrect magic value: {magic:x}"));
    }
    r.tpm2b().map_err(err)?; // qualifiedSigner
    r.tpm2b().map_err(err)?; // extraData
    r.bytes(8 + 4 + 4 + 1).map_err(err)?; // clockInfo
    r.u64().map_err(err)?; // firmwareVersion
    if kind != ST_ATTEST_CERTIFY {
        return Err("missing certify info".into());
    }
    let name = r.tpm2b().map_err(err)?.to_vec();
    r.tpm2b().map_err(err)?; // qualifiedName
    Ok(name)
}

/// A decoded `TPMT_SIGNATURE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Signature {
    Rsa { hash: u16, sig: Vec<u8> },
    Ecc { hash: u16, r: Vec<u8>, s: Vec<u8> },
}

impl Signature {
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, Tpm2Error> {
        let sig_alg = r.u16()?;
        match sig_alg {
            alg::RSASSA | alg::RSAPSS => {
                let hash = r.u16()?;
                let sig = r.tpm2b()?.to_vec();
                Ok(Self::Rsa { hash, sig })
            }
            alg::ECDSA => {
                let hash = r.u16()?;
                let rr = r.tpm2b()?.to_vec();
                let s = r.tpm2b()?.to_vec();
                Ok(Self::Ecc { hash, r: rr, s })
            }
            _ => Err(Tpm2Error::Invalid("unsupported signature algorithm")),
        }
    }
}

/// KDFa of SP 800-108 in counter mode with HMAC (TPM 2.0 Part 1, 11.4.10.2).
pub(crate) fn kdfa(
    hash: u16,
    key: &[u8],
    label: &str,
    context_u: &[u8],
    context_v: &[u8],
    bits: u32,
) -> Result<Vec<u8>, Tpm2Error> {
    let key = hmac::Key::new(hmac_alg(hash)?, key);
    let len = bits.div_ceil(8) as usize;
    let mut out = Vec::with_capacity(len + 64);
    let mut counter: u32 = 1;
    while out.len() < len {
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(&counter.to_be_bytes());
        ctx.update(label.as_bytes());
        ctx.update(&[0]);
        ctx.update(context_u);
        ctx.update(context_v);
        ctx.update(&bits.to_be_bytes());
        out.extend_from_slice(ctx.sign().as_ref());
        counter += 1;
    }
    out.truncate(len);
    if !bits.is_multiple_of(8)
        && let Some(first) = out.first_mut()
    {
        *first &= (1u8 << (bits % 8)) - 1;
    }
    Ok(out)
}

/// AES-CFB with a zero IV, the credential's symmetric protection.
pub(crate) fn aes_cfb(key: &[u8], data: &mut [u8], encrypt: bool) -> Result<(), &'static str> {
    use aws_lc_rs::cipher::{
        AES_128, AES_256, DecryptingKey, DecryptionContext, EncryptingKey, EncryptionContext,
        UnboundCipherKey,
    };
    use aws_lc_rs::iv::FixedLength;
    let algorithm = match key.len() {
        16 => &AES_128,
        32 => &AES_256,
        _ => return Err("unsupported symmetric key size"),
    };
    let unbound = UnboundCipherKey::new(algorithm, key).map_err(|_| "bad symmetric key")?;
    let iv = FixedLength::from([0u8; 16]);
    if encrypt {
        let k = EncryptingKey::cfb128(unbound).map_err(|_| "bad symmetric key")?;
        k.less_safe_encrypt(data, EncryptionContext::Iv128(iv))
            .map_err(|_| "symmetric encryption failed")?;
    } else {
        let k = DecryptingKey::cfb128(unbound).map_err(|_| "bad symmetric key")?;
        k.decrypt(data, DecryptionContext::Iv128(iv))
            .map_err(|_| "symmetric decryption failed")?;
    }
    Ok(())
}

/// A credential-activation challenge: the `TPM2B_ID_OBJECT` and `TPM2B_ENCRYPTED_SECRET`
/// contents (without their size fields, as SPIRE sends them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Credential {
    pub(crate) id_object: Vec<u8>,
    pub(crate) secret: Vec<u8>,
}

/// `TPM2_MakeCredential` in software for an RSA EK: binds `secret` to the object named
/// `ak_name` in the TPM that holds `ek` (the EK's SubjectPublicKeyInfo). `seed` is the
/// random symmetric seed, `sym_bytes` long.
pub(crate) fn make_credential(
    ak_name: &[u8],
    ek_spki: &[u8],
    seed: &[u8],
    secret: &[u8],
) -> Result<Credential, String> {
    use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey, PublicEncryptingKey};
    let name_alg = match ak_name {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => return Err("empty attestation key name".into()),
    };
    if name_alg != alg::SHA256 {
        // go-tpm hashes the seed's OAEP with the AK name algorithm; only SHA-256 here.
        return Err(format!("unsupported name algorithm 0x{name_alg:04x}"));
    }
    let ek =
        PublicEncryptingKey::from_der(ek_spki).map_err(|e| format!("bad endorsement key: {e}"))?;
    let ek = OaepPublicEncryptingKey::new(ek).map_err(|_| "bad endorsement key".to_string())?;
    let mut encrypted_seed = vec![0u8; ek.ciphertext_size()];
    let encrypted_seed = ek
        .encrypt(
            &OAEP_SHA256_MGF1SHA256,
            seed,
            &mut encrypted_seed,
            Some(b"IDENTITY\0"),
        )
        .map_err(|_| "generating encrypted seed failed".to_string())?
        .to_vec();
    let bits = u32::try_from(seed.len() * 8).map_err(|_| "seed too long".to_string())?;
    let sym_key = kdfa(name_alg, seed, "STORAGE", ak_name, &[], bits).map_err(|e| e.to_string())?;
    let mut enc_identity = Writer::default().tpm2b(secret).0.clone();
    aes_cfb(&sym_key, &mut enc_identity, true)?;
    let hmac_alg = hmac_alg(name_alg).map_err(|e| e.to_string())?;
    let mac_len = hmac_alg.digest_algorithm().output_len();
    let mac_key = kdfa(
        name_alg,
        seed,
        "INTEGRITY",
        &[],
        &[],
        u32::try_from(mac_len * 8).unwrap_or(256),
    )
    .map_err(|e| e.to_string())?;
    let mut ctx = hmac::Context::with_key(&hmac::Key::new(hmac_alg, &mac_key));
    ctx.update(&enc_identity);
    ctx.update(ak_name);
    let integrity = ctx.sign();
    let mut id_object = Writer::default();
    id_object.tpm2b(integrity.as_ref()).raw(&enc_identity);
    Ok(Credential {
        id_object: id_object.0,
        secret: encrypted_seed,
    })
}

#[cfg(test)]
mod tests;
