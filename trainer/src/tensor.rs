//! Activation tensors in channel-major `[C, N, H, W]` layout.
//!
//! The trainer keeps every activation channel-major: a convolution computed as
//! `W[Cout, Cin*k*k] x cols[Cin*k*k, N*H*W]` then lands directly in this layout, BatchNorm and
//! PReLU see each channel as one contiguous row, and fully connected features are the special case
//! `H = W = 1` (`[F, N]`).

/// A dense `f32` tensor of shape `[c, n, h, w]`, row-major in that order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tensor {
    /// Channels (or features for flat tensors).
    pub c: usize,
    /// Batch size.
    pub n: usize,
    /// Height (1 for flat tensors).
    pub h: usize,
    /// Width (1 for flat tensors).
    pub w: usize,
    /// `c * n * h * w` values.
    pub data: Vec<f32>,
}

impl Tensor {
    /// A zero tensor of the given shape.
    pub fn zeros(c: usize, n: usize, h: usize, w: usize) -> Self {
        Self {
            c,
            n,
            h,
            w,
            data: vec![0.0; c * n * h * w],
        }
    }

    /// Reshapes in place to `[c, n, h, w]`, reusing the allocation; contents are unspecified
    /// (callers overwrite every element).
    pub fn reset(&mut self, c: usize, n: usize, h: usize, w: usize) {
        self.c = c;
        self.n = n;
        self.h = h;
        self.w = w;
        let len = c * n * h * w;
        if self.data.len() != len {
            self.data.resize(len, 0.0);
        }
    }

    /// Reshapes like [`reset`](Self::reset) and fills with zeros.
    pub fn reset_zeroed(&mut self, c: usize, n: usize, h: usize, w: usize) {
        self.reset(c, n, h, w);
        self.data.fill(0.0);
    }

    /// `h * w`: the size of one image plane.
    pub fn plane(&self) -> usize {
        self.h * self.w
    }

    /// Length of one channel row: `n * h * w`.
    pub fn row(&self) -> usize {
        self.n * self.h * self.w
    }

    /// The shape as `[c, n, h, w]`.
    pub fn shape(&self) -> [usize; 4] {
        [self.c, self.n, self.h, self.w]
    }

    /// Builds a `[1, n, h, w]` tensor from `n` images given as consecutive `h*w` planes.
    pub fn from_planes(n: usize, h: usize, w: usize, data: Vec<f32>) -> Self {
        assert_eq!(data.len(), n * h * w, "image data does not match its shape");
        Self {
            c: 1,
            n,
            h,
            w,
            data,
        }
    }
}
