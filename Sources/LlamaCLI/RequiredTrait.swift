// The llama tool needs the package trait `Tools` (on by default): `swift build --traits Tools`.
#if !Tools
#error("the llama tool needs the swift-llama package trait 'Tools' (on by default)")
#endif
