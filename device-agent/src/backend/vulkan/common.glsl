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
//
// Activation access (every shader reads inputs and writes its output through these):
// ACT    the element type of the activation buffers (binding 0, 1, and a second input at 2);
// QP     the push-constant fields of QUInt8 execution, appended at the end of every Params
//        block (the host appends them after the op's own words): scale and zero point of
//        the input at binding 0 (qsx, qzx), of a second input (qsb, qzb), of the output;
// LD0(buf, i) / LD2(buf, i)   element i of the input at binding 0 / of the second input, as afp;
// LDX(i)      LD0(x, i);
// STY(i, v)   stores real value v as output element i.
//
// QUINT8 (processor-friendly quantization, the precisions q8/q8s/q8f): inputs are the
// QTensor's codes as they are, 4 per uint (little-endian: code i is byte i & 3 of word
// i >> 2), so the host uploads bytes without conversion (naga's GLSL has no 8-bit types, so
// 8-bit storage is not used). They are dequantized on load, s * (q - z), to afp (F16 where
// the device has shaderFloat16); the output is requantized on store, round to nearest (ties
// up, as the CPU's fixed-point requantization) and saturated to 0..255, one code per uint:
// two invocations never write the same word, so any slice is written without atomics, and
// the host narrows the slice's codes to bytes when it reads them back.
#ifdef QUINT8
#define ACT uint
#define QP float qsx; float qzx; float qsb; float qzb; float qsy; float qzy;
#define QCODE(buf, i) float(((buf)[(i) >> 2u] >> (((i) & 3u) * 8u)) & 0xFFu)
#define LD0(buf, i) afp(p.qsx * (QCODE(buf, i) - p.qzx))
#define LD2(buf, i) afp(p.qsb * (QCODE(buf, i) - p.qzb))
#define STY(i, v) y[i] = uint(clamp(floor(float(v) / p.qsy + 0.5) + p.qzy, 0.0, 255.0))
#else
#define ACT sfp
#define QP
#define LD0(buf, i) afp((buf)[i])
#define LD2(buf, i) afp((buf)[i])
#define STY(i, v) y[i] = sfp(v)
#endif
#define LDX(i) LD0(x, i)
