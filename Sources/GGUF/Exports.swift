// Tensor element types (`GGMLType`) are defined with the kernels that compute with them;
// GGUF files name them, so users of this module see them too.
@_exported import Kernels
