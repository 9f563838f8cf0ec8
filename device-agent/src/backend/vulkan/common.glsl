#version 450
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_EXT_shader_16bit_storage : require
// Put in front of every shader of src/ops/*/*.comp by build.rs.
//
// sfp: the storage type of every tensor buffer (float16_t with FP16_STORAGE).
// afp: the arithmetic type of element-wise work (float16_t with FP16_ARITH). Reductions
//      (convolution, fully connected, average pooling, LRN, softmax) load afp operands and
//      accumulate in float: f16 accumulators lose whole units past 2048 and overflow at 65504.
#ifdef FP16_STORAGE
#define sfp float16_t
#else
#define sfp float
#endif
#ifdef FP16_ARITH
#define afp float16_t
#else
#define afp float
#endif
// Tensor bindings shared by every shader: 0 first input, 1 output, 2 and 3 parameters or
// a second input. The output of a slice is viewed as [outer, C, H, inner] (Geom on the host).
// naga's GLSL front end has no float16_t overloads of min/max: element-wise code uses these.
#define amax(a, b) ((a) > (b) ? (a) : (b))
#define amin(a, b) ((a) < (b) ? (a) : (b))
