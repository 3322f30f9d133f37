/// The largest weight a config may ask for. A checkpoint's metadata or a `config.json` can hold any
/// number (a damaged digit in a clip length or a width); a model built from it without this check asks
/// for a tensor beyond the address space, and the allocator has no error to give but a crash. 2^36
/// floats (256 GiB) is more than any model here needs by a factor of a thousand and still far inside
/// what mmap can reserve. In Engine, below every module that reads a config or a feature pipeline.
package enum ConfigLimits {
    package static let maxElements = 1 << 36

    /// "<name> of a x b x c is beyond any model's size (a damaged config?)" for the first weight, given as
    /// (name, dimensions), whose element count overflows or passes `maxElements`; nil when all fit.
    package static func oversized(_ weights: [(String, [Int])]) -> String? {
        for (name, dims) in weights {
            var n = 1
            for d in dims {
                let (product, overflow) = n.multipliedReportingOverflow(by: max(d, 0))
                guard !overflow, product <= maxElements else {
                    return "\(name) of \(dims.map(String.init).joined(separator: " x ")) is beyond any model's size (a damaged config?)"
                }
                n = product
            }
        }
        return nil
    }
}
