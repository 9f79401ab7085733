// MetanodeStorage
