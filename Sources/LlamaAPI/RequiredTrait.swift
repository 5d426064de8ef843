// This target's package dependencies are enabled by the package trait `Tools` (on by default).
#if !Tools
#error("LlamaAPI needs the swift-llama package trait 'Tools': depend on swift-llama with traits: [\"Tools\"] (or the default traits)")
#endif
