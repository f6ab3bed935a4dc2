//! Which SIMD paths our own kernels may take. Every kernel (index dot products, BERT's GELU and
//! attention, int8 layers, image resampling, depthwise convolution) picks AVX2+FMA at run time where the CPU has them and keeps a
//! portable fallback, so one binary runs on any x86-64 CPU, with or without AVX-512.
//!
//! `XMODAL_PORTABLE_KERNELS=1` forces the portable fallbacks everywhere: tests run whole
//! pipelines both ways and compare, so a fallback that no CI machine would otherwise take is
//! still exercised. (gemm, which candle and the fused training step call, dispatches on its own.)

use std::sync::OnceLock;

/// True when `XMODAL_PORTABLE_KERNELS` is set to anything but `0` or empty (read once).
pub fn portable_only() -> bool {
    static PORTABLE: OnceLock<bool> = OnceLock::new();
    *PORTABLE.get_or_init(|| {
        std::env::var("XMODAL_PORTABLE_KERNELS").is_ok_and(|v| !v.is_empty() && v != "0")
    })
}

/// AVX2 and FMA are present and allowed.
pub fn avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        !portable_only()
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// AVX-512 F is present and allowed (besides AVX2+FMA). `XMODAL_NO_AVX512=1` takes it away from
/// our kernels, so an AVX-512 machine runs (and measures) what an AVX2-only CPU would; gemm,
/// inside candle, still dispatches on its own.
pub fn avx512f() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static DENIED: OnceLock<bool> = OnceLock::new();
        let denied = *DENIED.get_or_init(|| {
            std::env::var("XMODAL_NO_AVX512").is_ok_and(|v| !v.is_empty() && v != "0")
        });
        avx2_fma() && !denied && std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// AVX-512 F + VNNI are present and allowed (see [`avx512f`]).
pub fn avx512_vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        avx512f() && std::arch::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// AVX2, FMA and F16C are present and allowed.
pub fn avx2_fma_f16c() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        avx2_fma() && std::arch::is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The SIMD extensions binaries are commonly built for, as this CPU reports them: what it has,
/// and what it lacks. For messages about a binary that died with SIGILL (an instruction this CPU
/// does not have): `has avx2 fma f16c; lacks avx512f avx512bw …`.
pub fn host_cpu_flags() -> String {
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! flags {
            ($($f:tt),*) => {
                [$(($f, std::arch::is_x86_feature_detected!($f))),*]
            };
        }
        let all = flags!(
            "sse4.2",
            "avx",
            "avx2",
            "fma",
            "f16c",
            "bmi2",
            "avx512f",
            "avx512bw",
            "avx512cd",
            "avx512dq",
            "avx512vl",
            "avx512vnni",
            "avx512vpopcntdq"
        );
        let has: Vec<&str> = all.iter().filter(|f| f.1).map(|f| f.0).collect();
        let lacks: Vec<&str> = all.iter().filter(|f| !f.1).map(|f| f.0).collect();
        format!(
            "has {}; lacks {}",
            if has.is_empty() {
                "none of them".to_string()
            } else {
                has.join(" ")
            },
            if lacks.is_empty() {
                "none of them".to_string()
            } else {
                lacks.join(" ")
            }
        )
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        format!("not an x86-64 CPU ({})", std::env::consts::ARCH)
    }
}

#[cfg(test)]
mod tests {
    /// scripts/ci/check-cpu-portability runs the kernel tests under qemu with
    /// `XMODAL_EXPECT_CPU` naming the CPU it emulates; this makes sure the emulation is that CPU
    /// (a check that ran on the host's CPU by mistake would prove nothing).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_cpu_is_the_one_the_portability_check_emulates() {
        let has = |f: bool| f;
        let (avx2, fma, f16c, avx512f) = (
            has(std::arch::is_x86_feature_detected!("avx2")),
            has(std::arch::is_x86_feature_detected!("fma")),
            has(std::arch::is_x86_feature_detected!("f16c")),
            has(std::arch::is_x86_feature_detected!("avx512f")),
        );
        match std::env::var("XMODAL_EXPECT_CPU").as_deref() {
            Ok("x86-64-v3") => assert!(
                avx2 && fma && f16c && !avx512f,
                "{}",
                super::host_cpu_flags()
            ),
            Ok("x86-64") => assert!(!avx2 && !fma && !avx512f, "{}", super::host_cpu_flags()),
            Ok(other) => panic!("unknown XMODAL_EXPECT_CPU {other:?}"),
            Err(_) => {}
        }
    }

    #[test]
    fn host_flags_name_what_the_cpu_has_and_lacks() {
        let s = super::host_cpu_flags();
        assert!(s.starts_with("has ") && s.contains("; lacks "), "{s}");
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            s.contains(" avx512f") && s.split("; lacks ").next().unwrap().contains("avx512f"),
            std::arch::is_x86_feature_detected!("avx512f"),
            "{s}"
        );
    }
}
