import Foundation

/// Which CoreML compute units to allow (MLModelConfiguration.computeUnits); raw values are the
/// names the LUT schema uses for runtime.compute_units.
public enum ComputeUnits: String, CaseIterable {
    case all, cpuOnly, cpuAndNeuralEngine, cpuAndGPU
}

#if canImport(Darwin)
/// Provenance of the machine: hardware identifier (e.g. "iPhone13,2" = iPhone 12), OS, CPU arch
/// (sysctl; only Apple's systems, the only ones the CoreML timing runs on).
public struct DeviceInfo {
    public let name: String
    public let model: String
    public let os: String
    public let arch: String

    public static func current() -> DeviceInfo {
        let model = sysctlString("hw.machine").flatMap { $0.hasPrefix("iPhone") || $0.hasPrefix("iPad") ? $0 : nil }
            ?? sysctlString("hw.model") ?? "unknown"
        let version = ProcessInfo.processInfo.operatingSystemVersion
        #if os(iOS)
        let osName = "iOS"
        #elseif os(macOS)
        let osName = "macOS"
        #else
        let osName = "unknown OS"
        #endif
        #if arch(arm64)
        let arch = "arm64"
        #elseif arch(x86_64)
        let arch = "x86_64"
        #else
        let arch = "unknown"
        #endif
        let os = "\(osName) \(version.majorVersion).\(version.minorVersion).\(version.patchVersion)"
        let name = model.lowercased().replacingOccurrences(of: ",", with: "_")
        return DeviceInfo(name: name, model: model, os: os, arch: arch)
    }

    private static func sysctlString(_ key: String) -> String? {
        var size = 0
        guard sysctlbyname(key, nil, &size, nil, 0) == 0, size > 0 else { return nil }
        var buffer = [CChar](repeating: 0, count: size)
        guard sysctlbyname(key, &buffer, &size, nil, 0) == 0 else { return nil }
        return String(cString: buffer)
    }
}
#endif
