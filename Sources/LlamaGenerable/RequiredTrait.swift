// This target's package dependencies are enabled by the package trait `Generable` (on by default).
#if !Generable
#error("LlamaGenerable needs the swift-llama package trait 'Generable': depend on swift-llama with traits: [\"Generable\"] (or the default traits)")
#endif
