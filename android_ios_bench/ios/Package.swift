// swift-tools-version:5.9
// EFBench: the iOS/macOS harness of ef-keras' android_ios_bench (CoreML latency -> LUT JSON).
//
//   swift build -c release && .build/release/efbench --manifest M/manifest.json --lut-out lut.json
//
// Opened in Xcode (15+) or Swift Playgrounds on a Mac, the `EFBench` iOS app product below is
// available as a run destination for an iPhone; `swift build` on the command line skips it.
// Where SwiftUI does not exist (Linux), the package is EFBenchCore, `efbench` and the tests:
// they build and test there, and `efbench` says that timing CoreML models needs macOS or iOS.
import PackageDescription
#if canImport(AppleProductTypes)
import AppleProductTypes
#endif

let package = Package(
    name: "EFBench",
    platforms: [.macOS(.v13), .iOS(.v16)],
    products: [
        .library(name: "EFBenchCore", targets: ["EFBenchCore"]),
        .executable(name: "efbench", targets: ["efbench"]),
    ],
    targets: [
        // Manifest/LUT JSON, statistics and the CoreML timing loop, shared by the CLI and the app.
        .target(name: "EFBenchCore"),
        // macOS command-line tool.
        .executableTarget(name: "efbench", dependencies: ["EFBenchCore"]),
        .testTarget(name: "EFBenchCoreTests", dependencies: ["EFBenchCore"]),
    ]
)

#if canImport(SwiftUI)
// SwiftUI app for iPhone (also compiles on macOS).
package.targets.append(.executableTarget(name: "EFBenchApp", dependencies: ["EFBenchCore"]))
#endif

#if canImport(AppleProductTypes)
package.products.append(
    .iOSApplication(
        name: "EFBench",
        targets: ["EFBenchApp"],
        bundleIdentifier: "org.efkeras.efbench",
        teamIdentifier: "",
        displayVersion: "0.1.0",
        bundleVersion: "1",
        appIcon: .placeholder(icon: .bolt),
        accentColor: .presetColor(.blue),
        supportedDeviceFamilies: [.phone, .pad],
        supportedInterfaceOrientations: [.portrait, .landscapeRight, .landscapeLeft]
    )
)
#endif
