// swift-tools-version:6.1
import CompilerPluginSupport
import PackageDescription

let package = Package(
    name: "swift-llama",
    // Linux and macOS run everything; iOS and visionOS apps embed the `Llama` library.
    platforms: [.macOS(.v14), .iOS(.v17), .visionOS(.v1)],
    products: [
        .executable(name: "llama", targets: ["LlamaCLI"]),
        .library(name: "Llama", targets: ["Llama"]),
        .library(name: "Jinja", targets: ["Jinja"]),
        .library(name: "LlamaServer", targets: ["LlamaServer"]),
        // Models from a Hugging Face hub into the hub's cache (networking stays out of `Llama`).
        .library(name: "LlamaHub", targets: ["LlamaHub"]),
        // Typed answers: @Generable Swift types as JSON schemas (swift-syntax stays out of `Llama`).
        .library(name: "LlamaGenerable", targets: ["LlamaGenerable"]),
    ],
    // The core library (`Llama`, `Jinja`) has no dependencies. Everything else sits behind a trait,
    // so an app that depends on us with `traits: []` resolves no other package (see README).
    traits: [
        .trait(name: "Tools", description: "The llama tool, the OpenAI/Ollama server (LlamaServer) and the hub client (LlamaHub)."),
        .trait(name: "Generable", description: "@Generable typed answers (LlamaGenerable); needs swift-syntax."),
        .default(enabledTraits: ["Tools", "Generable"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // Only the server target and the CLI use these.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        // The hub client (LlamaHub) uses these; the server uses swift-crypto's SHA-256 too.
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.0.0"),
        .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"5.0.0"),
        // Only the @Generable macro uses it.
        .package(url: "https://github.com/swiftlang/swift-syntax", "600.0.0"..<"604.0.0"),
    ],
    targets: [
        // Vectorized C kernels with run-time choice of AVX-512 / AVX2 / NEON / scalar code.
        .target(name: "CKernels"),
        // Tensor element types and numeric kernels. Knows nothing about models or files.
        .target(name: "Kernels", dependencies: ["CKernels"]),
        // The container format: memory-mapped reading, validation and writing of GGUF files.
        .target(name: "GGUF", dependencies: ["Kernels"]),
        // SentencePiece-style and byte-level BPE tokenizers. Knows nothing about GGUF.
        .target(name: "Tokenizers"),
        // The Jinja subset that chat templates use. Knows nothing about models.
        .target(name: "Jinja"),
        // The public library: model metadata, tokenizer loading, the default model.
        .target(name: "Llama", dependencies: ["GGUF", "Kernels", "CKernels", "Tokenizers", "Jinja"]),
        // @Generable and @Guide: a compiler plugin that writes a type's schema and conversions.
        .macro(
            name: "LlamaGenerableMacros",
            dependencies: [
                .product(name: "SwiftSyntax", package: "swift-syntax", condition: .when(traits: ["Generable"])),
                .product(name: "SwiftSyntaxMacros", package: "swift-syntax", condition: .when(traits: ["Generable"])),
                .product(name: "SwiftCompilerPlugin", package: "swift-syntax", condition: .when(traits: ["Generable"])),
                .product(name: "SwiftDiagnostics", package: "swift-syntax", condition: .when(traits: ["Generable"])),
            ]
        ),
        // Typed output: Generable types, their schemas and guides, `respond(to:generating:)`.
        .target(name: "LlamaGenerable", dependencies: ["Llama", "Jinja", "LlamaGenerableMacros"]),
        // The server's request bodies read and checked, apart from any transport (OpenAI, Anthropic,
        // Ollama fields; errors in OpenAI's shape): what the fuzz targets build without the server stack.
        .target(
            name: "LlamaAPI",
            dependencies: ["Llama", "Jinja", .product(name: "HTTPTypes", package: "swift-http-types", condition: .when(traits: ["Tools"]))]
        ),
        // The OpenAI-compatible HTTP server on Hummingbird: routes, request validation, metrics.
        .target(
            name: "LlamaServer",
            dependencies: [
                "Llama", "LlamaAPI",
                .product(name: "Hummingbird", package: "hummingbird", condition: .when(traits: ["Tools"])),
                .product(name: "Crypto", package: "swift-crypto", condition: .when(traits: ["Tools"])),
                .product(name: "NIOCore", package: "swift-nio", condition: .when(traits: ["Tools"])),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras", condition: .when(traits: ["Tools"])),
                .product(name: "Logging", package: "swift-log", condition: .when(traits: ["Tools"])),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle", condition: .when(traits: ["Tools"])),
            ]
        ),
        // Hub names without networking: `user/repo[:QUANT]`, which files make a model, listing pages.
        .target(name: "HubNames"),
        // `llama pull` and `-hf`: the hub's API, resumable checked downloads, its cache layout.
        .target(
            name: "LlamaHub",
            dependencies: [
                "GGUF", "HubNames",
                .product(name: "AsyncHTTPClient", package: "async-http-client", condition: .when(traits: ["Tools"])),
                .product(name: "Crypto", package: "swift-crypto", condition: .when(traits: ["Tools"])),
                .product(name: "NIOCore", package: "swift-nio", condition: .when(traits: ["Tools"])),
                .product(name: "NIOHTTP1", package: "swift-nio", condition: .when(traits: ["Tools"])),
            ]
        ),
        // The `llama` command-line tool: thin subcommands over the library.
        .executableTarget(
            name: "LlamaCLI",
            dependencies: [
                "Llama", "LlamaAPI", "LlamaServer", "LlamaHub",
                .product(name: "ArgumentParser", package: "swift-argument-parser", condition: .when(traits: ["Tools"])),
                .product(name: "Logging", package: "swift-log", condition: .when(traits: ["Tools"])),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle", condition: .when(traits: ["Tools"])),
                .product(name: "NIOCore", package: "swift-nio", condition: .when(traits: ["Tools"])),
            ]
        ),
        // Fuzz targets for every parser of untrusted input (Scripts/fuzz); built plainly, a corpus replayer.
        .executableTarget(name: "llama-fuzz", dependencies: ["Llama", "LlamaAPI", "GGUF", "Jinja", "Tokenizers", "HubNames"], path: "Fuzz",
                          exclude: ["Dictionaries", "Corpus"]),
        // About twenty lines that embed the library: load, chat, stream.
        .executableTarget(name: "chat-example", dependencies: ["Llama"], path: "Examples/ChatExample"),
        // Fixture lookup and scratch files shared by the test targets.
        .target(name: "TestSupport", dependencies: ["Llama"], path: "Tests/TestSupport"),
        .testTarget(name: "GGUFTests", dependencies: ["GGUF", "TestSupport"]),
        .testTarget(name: "KernelsTests", dependencies: ["Kernels", "CKernels"], exclude: ["Golden"]),
        .testTarget(name: "TokenizersTests", dependencies: ["Tokenizers", "Llama", "TestSupport"], exclude: ["Golden"]),
        .testTarget(name: "JinjaTests", dependencies: ["Jinja"], exclude: ["Golden", "Templates"]),
        .testTarget(name: "LlamaTests", dependencies: ["Llama", "TestSupport"], exclude: ["Golden"]),
        .testTarget(name: "HubTests", dependencies: ["LlamaHub", "Llama", .product(name: "Crypto", package: "swift-crypto", condition: .when(traits: ["Tools"]))]),
        .testTarget(name: "GenerableTests", dependencies: ["LlamaGenerable", "TestSupport"]),
        // The server's routes in-process (Hummingbird's test client), and over loopback.
        .testTarget(
            name: "ServerTests",
            dependencies: ["LlamaServer", "LlamaAPI", "TestSupport", .product(name: "NIOEmbedded", package: "swift-nio", condition: .when(traits: ["Tools"]))]
        ),
        // Runs the built `llama` executable as a user would.
        .testTarget(name: "CLITests", dependencies: ["TestSupport", "LlamaCLI"]),
    ],
    swiftLanguageModes: [.v6]
)
