pub struct PgStorage;
