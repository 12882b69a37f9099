//! `base64::{encode, decode, encode_url, decode_url}` and `hex::{encode, decode}`. They encode a
//! string's UTF-8 bytes; decoding must give UTF-8 text (binary data has no string form).

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, Engine as _};
use rhai::Module;

use super::{add, error, SdkResult};

/// Standard alphabet; writes padding, accepts input with or without it.
const STANDARD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
/// URL-safe alphabet (`-` and `_`); writes no padding, accepts input with or without it.
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

pub(crate) fn base64_module() -> Module {
    let mut module = Module::new();
    add(
        &mut module,
        "encode",
        "The text's UTF-8 as base64, with padding",
        |text: &str| -> SdkResult<String> { Ok(STANDARD.encode(text)) },
    );
    add(
        &mut module,
        "decode",
        "The text that base64 (padded or not) encodes",
        |text: &str| -> SdkResult<String> {
            let bytes = STANDARD.decode(text.trim()).map_err(|err| {
                error(format!(
                    "base64::decode: the text is not valid base64: {err}"
                ))
            })?;
            utf8("base64::decode", bytes)
        },
    );
    add(
        &mut module,
        "encode_url",
        "The text's UTF-8 as URL-safe base64, without padding",
        |text: &str| -> SdkResult<String> { Ok(URL_SAFE.encode(text)) },
    );
    add(
        &mut module,
        "decode_url",
        "The text that URL-safe base64 encodes",
        |text: &str| -> SdkResult<String> {
            let bytes = URL_SAFE.decode(text.trim()).map_err(|err| {
                error(format!(
                    "base64::decode_url: the text is not valid URL-safe base64: {err}"
                ))
            })?;
            utf8("base64::decode_url", bytes)
        },
    );
    module
}

pub(crate) fn hex_module() -> Module {
    let mut module = Module::new();
    add(
        &mut module,
        "encode",
        "The text's UTF-8 as lower-case hex",
        |text: &str| -> SdkResult<String> { Ok(hex::encode(text)) },
    );
    add(
        &mut module,
        "decode",
        "The text that hex encodes",
        |text: &str| -> SdkResult<String> {
            let bytes = hex::decode(text.trim())
                .map_err(|err| error(format!("hex::decode: the text is not valid hex: {err}")))?;
            utf8("hex::decode", bytes)
        },
    );
    module
}

pub(crate) fn utf8(function: &str, bytes: Vec<u8>) -> SdkResult<String> {
    String::from_utf8(bytes).map_err(|_| {
        error(format!(
            "{function}: the decoded bytes are not UTF-8 text, and a string can only hold text"
        ))
    })
}
