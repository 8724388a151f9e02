//! ggml's tensor types as the llama.cpp this crate links knows them: what the GGUF header
//! reader (in the core) checks each tensor's size with.

/// Elements and bytes per block of a ggml tensor type, from the ggml this crate links
/// (`ggml_blck_size`, `ggml_type_size`), so a type llama.cpp adds or resizes is read right
/// without a table here to keep in step. `None` for types ggml does not know or has removed
/// (their block size is 0), whose size is then not checked.
pub fn block_layout(ggml_type: u32) -> Option<(u64, u64)> {
    if ggml_type >= llama_cpp_sys_2::GGML_TYPE_COUNT {
        return None;
    }
    // SAFETY: both read ggml's constant type-traits table; any type below the count indexes it.
    let (elements, bytes) = unsafe {
        (
            llama_cpp_sys_2::ggml_blck_size(ggml_type),
            llama_cpp_sys_2::ggml_type_size(ggml_type),
        )
    };
    let elements = u64::try_from(elements).ok().filter(|&n| n > 0)?;
    let bytes = u64::try_from(bytes).ok().filter(|&n| n > 0)?;
    Some((elements, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ggml_type_has_its_block_layout_from_ggml() {
        // The layouts a GGUF reader must agree on with the files in the wild (ggml's
        // `type_traits`); the rest of the table comes from the same place.
        let known = [
            (0, "f32", (1, 4)),
            (1, "f16", (1, 2)),
            (2, "q4_0", (32, 18)),
            (3, "q4_1", (32, 20)),
            (8, "q8_0", (32, 34)),
            (12, "q4_K", (256, 144)),
            (14, "q6_K", (256, 210)),
            (30, "bf16", (1, 2)),
        ];
        for (ty, name, layout) in known {
            assert_eq!(block_layout(ty), Some(layout), "{name}");
        }
        let mut usable = 0;
        for ty in 0..llama_cpp_sys_2::GGML_TYPE_COUNT {
            if let Some((elements, bytes)) = block_layout(ty) {
                usable += 1;
                // A block holds at least as many bytes as it takes to tell its elements apart,
                // and at most 8 bytes of scale per element beyond 8 bytes of data.
                assert!(elements.is_power_of_two(), "type {ty}: {elements} elements");
                assert!(
                    bytes <= elements * 8 + 16,
                    "type {ty}: {bytes} bytes for {elements}"
                );
            }
        }
        // Removed types (Q4_2, Q4_3, the ARM repacks) have no layout; the others all do.
        assert!(usable >= 30, "only {usable} types known to ggml");
        assert_eq!(block_layout(llama_cpp_sys_2::GGML_TYPE_COUNT), None);
        assert_eq!(block_layout(u32::MAX), None);
    }
}
