//! Opaque handles: boxed Rust values behind raw pointers, checked for null on every use.

use crate::error::FfiError;

/// Moves `value` to the heap and hands out the pointer (released by [`free`]).
pub(crate) fn into_raw<T>(value: T) -> *mut T {
    Box::into_raw(Box::new(value))
}

/// Null → `FfiError::Null`, misaligned → `FfiError::Invalid`.
fn check<T>(name: &'static str, ptr: *const T) -> Result<(), FfiError> {
    if ptr.is_null() {
        return Err(FfiError::Null(name));
    }
    if !ptr.is_aligned() {
        return Err(FfiError::Invalid(format!(
            "`{name}` = {ptr:p} is not aligned to {} bytes",
            align_of::<T>()
        )));
    }
    Ok(())
}

/// The handle (or caller struct) behind `ptr`.
///
/// # Safety
/// `ptr` must be null or come from [`into_raw`] and not have been freed; no `&mut` to it may
/// exist for `'a`.
pub(crate) unsafe fn get<'a, T>(name: &'static str, ptr: *const T) -> Result<&'a T, FfiError> {
    check(name, ptr)?;
    // SAFETY: non-null and aligned (checked), live by this function's contract.
    Ok(unsafe { &*ptr })
}

/// The handle behind `ptr`, mutably.
///
/// # Safety
/// As [`get`], and no other reference to it may exist for `'a`.
pub(crate) unsafe fn get_mut<'a, T>(
    name: &'static str,
    ptr: *mut T,
) -> Result<&'a mut T, FfiError> {
    check(name, ptr)?;
    // SAFETY: non-null and aligned (checked), live and unaliased by this function's contract.
    Ok(unsafe { &mut *ptr })
}

/// Drops the handle behind `ptr` (null: nothing).
///
/// # Safety
/// `ptr` must be null or come from [`into_raw`] and not have been freed.
pub(crate) unsafe fn free<T>(ptr: *mut T) -> Result<(), FfiError> {
    if !ptr.is_null() {
        // SAFETY: a live pointer from `Box::into_raw`, by this function's contract.
        drop(unsafe { Box::from_raw(ptr) });
    }
    Ok(())
}

/// The out-parameter `out`, set to null so that the caller sees null on any error.
///
/// # Safety
/// `out` must be null or valid for writing one pointer.
pub(crate) unsafe fn out_ptr<'a, T>(
    name: &'static str,
    out: *mut *mut T,
) -> Result<&'a mut *mut T, FfiError> {
    // SAFETY: forwarded from this function's contract.
    let out = unsafe { get_mut(name, out) }?;
    *out = std::ptr::null_mut();
    Ok(out)
}
