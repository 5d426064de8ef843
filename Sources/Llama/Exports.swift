// The library product `Llama` brings the layers below it along, so an app needs one import.
@_exported import GGUF
@_exported import Tokenizers
