//! Paging rules shared by every list.

use picloud_core::InputError;
use picloud_store::PageRequest;

use crate::error::ServiceResult;

/// A page size must be 1 to [`PageRequest::MAX_LIMIT`].
pub fn check_page(page: &PageRequest) -> ServiceResult<()> {
    if page.limit == 0 || page.limit > PageRequest::MAX_LIMIT {
        return Err(InputError::new(
            "limit",
            format!("the limit must be between 1 and {}", PageRequest::MAX_LIMIT),
        )
        .into());
    }
    Ok(())
}
