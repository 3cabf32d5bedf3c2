"""Triton kernels of the selective scan (imported only when triton is used).

One program handles one sample and a block of ``BD`` channels of one scan
direction, and walks over time in tiles of ``BL`` steps in the direction's
scan order. Inside a tile the recurrence is an associative scan over
(decay, input) pairs, combined as (a1, x1) o (a2, x2) = (a1 a2, a2 x1 + x2);
the state entering the tile is folded into its first element. Every tensor
stays in raster order: a backwards direction loads the same tiles and scans
them with ``reverse=True``, so no flipped copy is ever made.

The forward kernel fuses delta + bias, softplus, exp(dt A), dt u B, the
scan, C h, the D skip and the SiLU(z) gate, and stores the state entering
each tile (a checkpoint). The backward kernel walks the tiles in the
opposite order, recomputes each tile's states from its checkpoint, runs the
adjoint recurrence (again an associative scan, reversed) and writes every
input gradient; sums over channels (dB, dC) and over time (dA, dD,
d(delta_bias)) are written as per-program partials that the caller adds
up, so no atomics are needed.

Layouts (contiguous): u, z, y, du, dz (b, d, L); delta, d(delta)
(b, K, d, L); A (K, d, N); B, C (b, K, G, N, L); D (d,) summed over the
directions; delta_bias (K, d); checkpoints (b, K, d, N, tiles).
"""
import triton
import triton.language as tl


@triton.jit
def _combine(a1, x1, a2, x2):
    return a1 * a2, a2 * x1 + x2


@triton.jit
def _softplus(s):
    # max(s, 0) + log(1 + exp(-|s|)) never overflows; above 20 it is s.
    sp = tl.maximum(s, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(s)))
    return tl.where(s > 20.0, s, sp)


@triton.jit
def _load_dt(delta_ptr, bias, row, offs_t, mask, SOFTPLUS: tl.constexpr,
             HAS_BIAS: tl.constexpr):
    """Time steps of a [BD, BL] tile; 0 where masked (decay 1, input 0)."""
    s = tl.load(delta_ptr + row[:, None] + offs_t[None, :], mask=mask,
                other=0.0).to(tl.float32)
    if HAS_BIAS:
        s = s + bias[:, None]
    dt = s
    if SOFTPLUS:
        dt = _softplus(s)
    return tl.where(mask, dt, 0.0), s


@triton.jit
def _tile_states(u_ptr, delta_ptr, B_ptr, A, bias, carry, u_row, dl_row,
                 bc_row, offs_t, offs_n, mask_d, mask_n, length,
                 SOFTPLUS: tl.constexpr, HAS_BIAS: tl.constexpr,
                 REVERSE: tl.constexpr, BL: tl.constexpr):
    """States h of one tile, started from ``carry``; also the pieces the
    backward pass needs."""
    mask_t = offs_t < length
    m2 = mask_d[:, None] & mask_t[None, :]
    u = tl.load(u_ptr + u_row[:, None] + offs_t[None, :], mask=m2,
                other=0.0).to(tl.float32)
    dt, s = _load_dt(delta_ptr, bias, dl_row, offs_t, m2, SOFTPLUS, HAS_BIAS)
    Bt = tl.load(B_ptr + bc_row + offs_n[:, None] * length + offs_t[None, :],
                 mask=mask_n[:, None] & mask_t[None, :],
                 other=0.0).to(tl.float32)
    a = tl.exp(dt[:, None, :] * A[:, :, None])
    x = (dt * u)[:, None, :] * Bt[None, :, :]
    idx = tl.arange(0, BL)[None, None, :]
    # x is returned without the carry: h - x is then a_t h_{t-1} everywhere.
    if REVERSE:
        x_in = tl.where(idx == BL - 1, x + a * carry[:, :, None], x)
        _, h = tl.associative_scan((a, x_in), 2, _combine, reverse=True)
        carry = tl.sum(tl.where(idx == 0, h, 0.0), 2)
    else:
        x_in = tl.where(idx == 0, x + a * carry[:, :, None], x)
        _, h = tl.associative_scan((a, x_in), 2, _combine)
        carry = tl.sum(tl.where(idx == BL - 1, h, 0.0), 2)
    return h, x, u, dt, s, Bt, carry


@triton.jit
def scan_fwd_kernel(u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr,
                    z_ptr, y_ptr, ck_ptr, last_ptr, dim, length, n_state,
                    group_dim, n_tiles, k_dirs, k,
                    REVERSE: tl.constexpr, SOFTPLUS: tl.constexpr,
                    HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr,
                    HAS_Z: tl.constexpr, ACCUM_Y: tl.constexpr,
                    STORE_LAST: tl.constexpr, BD: tl.constexpr,
                    NP: tl.constexpr, BL: tl.constexpr):
    """Scan direction ``k`` of one (sample, channel block) and add its
    output to y (the first direction launched writes y, with D u)."""
    pid_b = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1)
    offs_d = pid_d * BD + tl.arange(0, BD)
    mask_d = offs_d < dim
    offs_n = tl.arange(0, NP)
    mask_n = offs_n < n_state
    m_dn = mask_d[:, None] & mask_n[None, :]
    group = (pid_d * BD) // group_dim
    groups = dim // group_dim
    A = tl.load(A_ptr + (k * dim + offs_d)[:, None] * n_state +
                offs_n[None, :], mask=m_dn, other=0.0).to(tl.float32)
    bias = tl.zeros([BD], tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + k * dim + offs_d, mask=mask_d,
                       other=0.0).to(tl.float32)
    D = tl.zeros([BD], tl.float32)
    if HAS_D:
        D = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    u_row = (pid_b * dim + offs_d) * length
    dl_row = ((pid_b * k_dirs + k) * dim + offs_d) * length
    bc_row = ((pid_b * k_dirs + k) * groups + group) * n_state * length
    ck_row = (((pid_b * k_dirs + k) * dim + offs_d)[:, None] * n_state +
              offs_n[None, :]) * n_tiles
    carry = tl.zeros([BD, NP], tl.float32)
    for jj in range(n_tiles):
        if REVERSE:
            j = n_tiles - 1 - jj
        else:
            j = jj
        tl.store(ck_ptr + ck_row + j, carry, mask=m_dn)
        offs_t = j * BL + tl.arange(0, BL)
        m2 = mask_d[:, None] & (offs_t < length)[None, :]
        h, x, u, dt, s, Bt, carry = _tile_states(
            u_ptr, delta_ptr, B_ptr, A, bias, carry, u_row, dl_row, bc_row,
            offs_t, offs_n, mask_d, mask_n, length, SOFTPLUS, HAS_BIAS,
            REVERSE, BL)
        Ct = tl.load(C_ptr + bc_row + offs_n[:, None] * length +
                     offs_t[None, :], mask=mask_n[:, None] &
                     (offs_t < length)[None, :], other=0.0).to(tl.float32)
        y = tl.sum(h * Ct[None, :, :], 1)
        if HAS_D:
            y += D[:, None] * u
        y_ptrs = y_ptr + u_row[:, None] + offs_t[None, :]
        if ACCUM_Y:
            y += tl.load(y_ptrs, mask=m2, other=0.0)
        if HAS_Z:
            zz = tl.load(z_ptr + u_row[:, None] + offs_t[None, :], mask=m2,
                         other=0.0).to(tl.float32)
            y = y * zz * tl.sigmoid(zz)
        tl.store(y_ptrs, y, mask=m2)
    if STORE_LAST:
        tl.store(last_ptr + (pid_b * dim + offs_d)[:, None] * n_state +
                 offs_n[None, :], carry, mask=m_dn)


@triton.jit
def scan_bwd_kernel(u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr,
                    z_ptr, gy_ptr, ck_ptr, glast_ptr, gu_ptr, gdelta_ptr,
                    gA_ptr, gB_ptr, gC_ptr, gD_ptr, gbias_ptr, gz_ptr, dim,
                    length, n_state, group_dim, n_tiles, k_dirs, n_dblk, k,
                    REVERSE: tl.constexpr, SOFTPLUS: tl.constexpr,
                    HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr,
                    HAS_Z: tl.constexpr, ACCUM_GU: tl.constexpr,
                    HAS_GLAST: tl.constexpr, BD: tl.constexpr,
                    NP: tl.constexpr, BL: tl.constexpr):
    """Gradients of direction ``k`` for one (sample, channel block)."""
    pid_b = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1)
    offs_d = pid_d * BD + tl.arange(0, BD)
    mask_d = offs_d < dim
    offs_n = tl.arange(0, NP)
    mask_n = offs_n < n_state
    m_dn = mask_d[:, None] & mask_n[None, :]
    group = (pid_d * BD) // group_dim
    groups = dim // group_dim
    A = tl.load(A_ptr + (k * dim + offs_d)[:, None] * n_state +
                offs_n[None, :], mask=m_dn, other=0.0).to(tl.float32)
    bias = tl.zeros([BD], tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + k * dim + offs_d, mask=mask_d,
                       other=0.0).to(tl.float32)
    D = tl.zeros([BD], tl.float32)
    if HAS_D:
        D = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    u_row = (pid_b * dim + offs_d) * length
    dl_row = ((pid_b * k_dirs + k) * dim + offs_d) * length
    bc_row = ((pid_b * k_dirs + k) * groups + group) * n_state * length
    ck_row = (((pid_b * k_dirs + k) * dim + offs_d)[:, None] * n_state +
              offs_n[None, :]) * n_tiles
    part_row = ((pid_b * k_dirs + k) * n_dblk + pid_d) * n_state * length
    glast = tl.zeros([BD, NP], tl.float32)
    if HAS_GLAST:
        glast = tl.load(glast_ptr + (pid_b * dim + offs_d)[:, None] *
                        n_state + offs_n[None, :], mask=m_dn,
                        other=0.0).to(tl.float32)
    idx = tl.arange(0, BL)[None, None, :]
    lam_carry = tl.zeros([BD, NP], tl.float32)
    gA_acc = tl.zeros([BD, NP], tl.float32)
    gD_acc = tl.zeros([BD], tl.float32)
    gb_acc = tl.zeros([BD], tl.float32)
    for jj in range(n_tiles):
        # The adjoint runs against the scan: last scanned tile first.
        if REVERSE:
            j = jj
        else:
            j = n_tiles - 1 - jj
        offs_t = j * BL + tl.arange(0, BL)
        mask_t = offs_t < length
        m2 = mask_d[:, None] & mask_t[None, :]
        carry = tl.load(ck_ptr + ck_row + j, mask=m_dn, other=0.0)
        h, x, u, dt, s, Bt, carry = _tile_states(
            u_ptr, delta_ptr, B_ptr, A, bias, carry, u_row, dl_row, bc_row,
            offs_t, offs_n, mask_d, mask_n, length, SOFTPLUS, HAS_BIAS,
            REVERSE, BL)
        # Decay of the step the adjoint comes from: a_{t+1} (a_{t-1} when
        # the scan runs backwards).
        if REVERSE:
            offs_p = offs_t - 1
        else:
            offs_p = offs_t + 1
        m_p = mask_d[:, None] & ((offs_p >= 0) & (offs_p < length))[None, :]
        dt_p, _ = _load_dt(delta_ptr, bias, dl_row, offs_p, m_p, SOFTPLUS,
                           HAS_BIAS)
        a_p = tl.exp(dt_p[:, None, :] * A[:, :, None])
        gy = tl.load(gy_ptr + u_row[:, None] + offs_t[None, :], mask=m2,
                     other=0.0).to(tl.float32)
        Ct = tl.load(C_ptr + bc_row + offs_n[:, None] * length +
                     offs_t[None, :], mask=mask_n[:, None] & mask_t[None, :],
                     other=0.0).to(tl.float32)
        if HAS_Z:
            zz = tl.load(z_ptr + u_row[:, None] + offs_t[None, :], mask=m2,
                         other=0.0).to(tl.float32)
            sg = tl.sigmoid(zz)
            y_pre = tl.sum(h * Ct[None, :, :], 1)
            if HAS_D:
                y_pre += D[:, None] * u
            tl.store(gz_ptr + u_row[:, None] + offs_t[None, :],
                     gy * y_pre * sg * (1.0 + zz * (1.0 - sg)), mask=m2)
            gy = gy * zz * sg
        g = gy[:, None, :] * Ct[None, :, :]
        if HAS_GLAST:
            g += tl.where(offs_t[None, None, :] == length - 1,
                          glast[:, :, None], 0.0)
        if REVERSE:
            g = tl.where(idx == 0, g + a_p * lam_carry[:, :, None], g)
            _, lam = tl.associative_scan((a_p, g), 2, _combine)
            lam_carry = tl.sum(tl.where(idx == BL - 1, lam, 0.0), 2)
        else:
            g = tl.where(idx == BL - 1, g + a_p * lam_carry[:, :, None], g)
            _, lam = tl.associative_scan((a_p, g), 2, _combine, reverse=True)
            lam_carry = tl.sum(tl.where(idx == 0, lam, 0.0), 2)
        # a_t h_{t-1} = h_t - x_t: the state carried into step t.
        h_in = h - x
        t_row = offs_n[:, None] * length + offs_t[None, :]
        m_nt = mask_n[:, None] & mask_t[None, :]
        tl.store(gC_ptr + part_row + t_row,
                 tl.sum(gy[:, None, :] * h, 0), mask=m_nt)
        tl.store(gB_ptr + part_row + t_row,
                 tl.sum(lam * (dt * u)[:, None, :], 0), mask=m_nt)
        gu = tl.sum(lam * Bt[None, :, :], 1) * dt
        if HAS_D:
            gu += gy * D[:, None]
            gD_acc += tl.sum(gy * u, 1)
        gu_ptrs = gu_ptr + u_row[:, None] + offs_t[None, :]
        if ACCUM_GU:
            gu += tl.load(gu_ptrs, mask=m2, other=0.0)
        tl.store(gu_ptrs, gu, mask=m2)
        lam_h = lam * h_in
        gA_acc += tl.sum(lam_h * dt[:, None, :], 2)
        g_dt = tl.sum(lam * (u[:, None, :] * Bt[None, :, :]) +
                      lam_h * A[:, :, None], 1)
        if SOFTPLUS:
            g_dt = g_dt * tl.sigmoid(s)
        g_dt = tl.where(m2, g_dt, 0.0)
        tl.store(gdelta_ptr + dl_row[:, None] + offs_t[None, :], g_dt,
                 mask=m2)
        gb_acc += tl.sum(g_dt, 1)
    tl.store(gA_ptr + ((pid_b * k_dirs + k) * dim + offs_d)[:, None] *
             n_state + offs_n[None, :], gA_acc, mask=m_dn)
    if HAS_D:
        tl.store(gD_ptr + pid_b * dim + offs_d, gD_acc, mask=mask_d)
    if HAS_BIAS:
        tl.store(gbias_ptr + (pid_b * k_dirs + k) * dim + offs_d, gb_acc,
                 mask=mask_d)
