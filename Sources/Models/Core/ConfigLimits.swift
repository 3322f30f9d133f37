/// The largest weight a config may ask for. A checkpoint's metadata can hold any number (a damaged digit
/// in `inputTdim` or `dim`); a model built from it without this check asks for a tensor beyond the
/// address space, and the allocator has no error to give but a crash. 2^36 floats (256 GiB) is more than
/// any model here needs by a factor of a thousand and still far inside what mmap can reserve.
enum ConfigLimits {
    static let maxElements = 1 << 36

    /// Throws `ModelError` naming the first weight, given as (name, dimensions), whose element count
    /// overflows or passes `maxElements`.
    static func check(_ weights: [(String, [Int])]) throws {
        for (name, dims) in weights {
            var n = 1
            for d in dims {
                let (product, overflow) = n.multipliedReportingOverflow(by: max(d, 0))
                guard !overflow, product <= maxElements else {
                    throw ModelError("model config: \(name) of \(dims.map(String.init).joined(separator: " x ")) is beyond any model's size (a damaged config?)")
                }
                n = product
            }
        }
    }
}
