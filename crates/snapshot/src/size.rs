//! The output size rule of the reference doc (L2634–2646).

/// The largest picture side [`output_size`] produces; larger values are clamped (the API allows at most 3000×2000,
/// this only keeps a bad caller from asking ffmpeg for a gigapixel JPEG).
pub const MAX_SIDE: u32 = 8192;

/// The picture size for a push of `source` = (X, Y) and a configured `configured` = (W, H):
///
/// - W = 0, H = 0: the source size;
/// - only W: width W, height scaled to keep the source's aspect (W / X · Y);
/// - only H: height H, width scaled the same way (H / Y · X);
/// - both: (W, H) as configured, except that a portrait request (W < H) on a landscape source (X > Y) is swapped
///   to (H, W) so the picture is not distorted, as the doc states. The symmetric case, a landscape request
///   (W > H) on a portrait source (X < Y), is swapped too: the doc only states the first direction, but the
///   reason it gives applies to both (phones push portrait streams).
///
/// Every side is rounded to the nearest even number (encoders and chroma subsampling want even sizes), at least
/// 2 and at most [`MAX_SIDE`]. A source side of 0 (unknown) counts as 1 so the function never divides by zero;
/// callers should not ask for a derived side of an unknown source.
pub fn output_size(source: (u32, u32), configured: (u32, u32)) -> (u32, u32) {
    let (x, y) = (u64::from(source.0.max(1)), u64::from(source.1.max(1)));
    let (w, h) = (u64::from(configured.0), u64::from(configured.1));
    let (n, m) = match (w, h) {
        (0, 0) => (even(x), even(y)),
        (w, 0) => (even(w), scaled_even(w, y, x)),
        (0, h) => (scaled_even(h, x, y), even(h)),
        (w, h) if (w < h && x > y) || (w > h && x < y) => (even(h), even(w)),
        (w, h) => (even(w), even(h)),
    };
    let clamp = |v: u64| v.clamp(2, u64::from(MAX_SIDE)) as u32;
    (clamp(n), clamp(m))
}

/// `a · b / c` rounded to the nearest even integer in one step (rounding to an integer first and then to an even
/// number could land on the farther one).
fn scaled_even(a: u64, b: u64, c: u64) -> u64 {
    (a * b + c) / (2 * c) * 2
}

/// The nearest even number (an odd one rounds up).
fn even(v: u64) -> u64 {
    v.div_ceil(2) * 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_rule_table() {
        let cases = [
            // (source, configured, expected, what)
            ((1280, 720), (0, 0), (1280, 720), "both 0: the source size"),
            ((1280, 720), (640, 0), (640, 360), "only W: H follows the aspect"),
            ((1280, 720), (0, 360), (640, 360), "only H: W follows the aspect"),
            ((1280, 720), (640, 480), (640, 480), "both: as configured, even if distorted"),
            ((1280, 720), (360, 640), (640, 360), "portrait request on a landscape source: swapped (doc)"),
            ((720, 1280), (640, 360), (360, 640), "landscape request on a portrait source: swapped (symmetric)"),
            ((720, 1280), (360, 640), (360, 640), "portrait on portrait: as is"),
            ((1280, 720), (500, 500), (500, 500), "square request: never swapped"),
            ((720, 720), (360, 640), (360, 640), "square source: never swapped"),
            ((1920, 1080), (0, 0), (1920, 1080), "source size kept"),
        ];
        for (source, configured, expected, what) in cases {
            assert_eq!(output_size(source, configured), expected, "{what}: {source:?} {configured:?}");
        }
    }

    #[test]
    fn odd_sizes_are_rounded_to_even() {
        assert_eq!(output_size((1279, 719), (0, 0)), (1280, 720), "odd source");
        assert_eq!(output_size((1280, 720), (641, 0)), (642, 360), "641 → 642; 360.56 → 360, not 361 → 362");
        assert_eq!(output_size((640, 480), (0, 101)), (134, 102), "101 → 102; 134.67 → 134");
        assert_eq!(output_size((1280, 720), (333, 0)), (334, 188), "333 → 334; 187.3 → 188");
        assert_eq!(output_size((1280, 720), (361, 641)), (642, 362), "swapped and rounded");
    }

    #[test]
    fn never_zero_and_never_huge() {
        assert_eq!(output_size((0, 0), (0, 0)), (2, 2));
        assert_eq!(output_size((4000, 2), (2, 0)), (2, 2), "a derived side of 0.001 is still 2");
        assert_eq!(output_size((1280, 720), (100_000, 0)).0, MAX_SIDE);
    }
}
