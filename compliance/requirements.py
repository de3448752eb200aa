"""Which parts of SQLAlchemy's compliance suite apply to postgresql+agentdb (PostgreSQL's).

The suite's requirements class (``setup.cfg``: ``requirement_cls = requirements:Requirements``,
importable because ``compliance/conftest.py`` puts this directory on ``sys.path``). It is
test configuration: it ships in no package.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.testing import exclusions
from sqlalchemy.testing.requirements import SuiteRequirements


class Requirements(SuiteRequirements):  # type: ignore[misc]
    """PostgreSQL supports these; SuiteRequirements leaves them closed by default."""

    @property
    def create_table_as(self) -> Any:
        return exclusions.open()

    @property
    def create_temp_table_as(self) -> Any:
        return exclusions.open()

    @property
    def table_ddl_if_exists(self) -> Any:
        return exclusions.open()

    @property
    def index_ddl_if_exists(self) -> Any:
        return exclusions.open()

    @property
    def uuid_data_type(self) -> Any:
        return exclusions.open()

    @property
    def non_updating_cascade(self) -> Any:
        return exclusions.open()

    @property
    def deferrable_fks(self) -> Any:
        return exclusions.open()

    @property
    def boolean_col_expressions(self) -> Any:
        return exclusions.open()

    @property
    def nullsordering(self) -> Any:
        return exclusions.open()

    @property
    def intersect(self) -> Any:
        return exclusions.open()

    @property
    def except_(self) -> Any:
        return exclusions.open()

    @property
    def window_functions(self) -> Any:
        return exclusions.open()

    @property
    def window_range(self) -> Any:
        return exclusions.open()

    @property
    def window_range_numeric(self) -> Any:
        return exclusions.open()

    @property
    def window_range_non_numeric(self) -> Any:
        return exclusions.open()

    @property
    def ctes(self) -> Any:
        return exclusions.open()

    @property
    def views(self) -> Any:
        return exclusions.open()

    @property
    def cross_schema_fk_reflection(self) -> Any:
        return exclusions.open()

    @property
    def reflects_pk_names(self) -> Any:
        return exclusions.open()

    @property
    def comment_reflection(self) -> Any:
        return exclusions.open()

    @property
    def constraint_comment_reflection(self) -> Any:
        return exclusions.open()

    @property
    def schema_create_delete(self) -> Any:
        return exclusions.open()

    @property
    def foreign_key_constraint_option_reflection_ondelete(self) -> Any:
        return exclusions.open()

    @property
    def fk_constraint_option_reflection_ondelete_restrict(self) -> Any:
        return exclusions.open()

    @property
    def fk_constraint_option_reflection_ondelete_noaction(self) -> Any:
        return exclusions.open()

    @property
    def foreign_key_constraint_option_reflection_onupdate(self) -> Any:
        return exclusions.open()

    @property
    def fk_constraint_option_reflection_onupdate_restrict(self) -> Any:
        return exclusions.open()

    @property
    def temp_table_names(self) -> Any:
        return exclusions.open()

    @property
    def has_temp_table(self) -> Any:
        return exclusions.open()

    @property
    def temporary_views(self) -> Any:
        return exclusions.open()

    @property
    def create_or_replace_view(self) -> Any:
        return exclusions.open()

    @property
    def index_reflects_included_columns(self) -> Any:
        return exclusions.open()

    @property
    def indexes_check_column_order(self) -> Any:
        return exclusions.open()

    @property
    def indexes_with_expressions(self) -> Any:
        return exclusions.open()

    @property
    def reflect_indexes_with_expressions(self) -> Any:
        return exclusions.open()

    @property
    def check_constraint_reflection(self) -> Any:
        return exclusions.open()

    @property
    def autocommit(self) -> Any:
        return exclusions.open()

    @property
    def array_type(self) -> Any:
        return exclusions.open()

    @property
    def json_type(self) -> Any:
        return exclusions.open()

    @property
    def precision_numerics_enotation_small(self) -> Any:
        return exclusions.open()

    @property
    def server_defaults(self) -> Any:
        return exclusions.open()

    @property
    def infinity_floats(self) -> Any:
        return exclusions.open()

    @property
    def float_or_double_precision_behaves_generically(self) -> Any:
        return exclusions.open()

    @property
    def savepoints(self) -> Any:
        return exclusions.open()

    @property
    def update_from(self) -> Any:
        return exclusions.open()

    @property
    def delete_from(self) -> Any:
        return exclusions.open()

    @property
    def mod_operator_as_percent_sign(self) -> Any:
        return exclusions.open()

    @property
    def computed_columns(self) -> Any:
        return exclusions.open()

    @property
    def computed_columns_stored(self) -> Any:
        return exclusions.open()

    @property
    def computed_columns_default_persisted(self) -> Any:
        return exclusions.open()

    @property
    def computed_columns_reflect_persisted(self) -> Any:
        return exclusions.open()

    @property
    def supports_distinct_on(self) -> Any:
        return exclusions.open()

    @property
    def identity_columns(self) -> Any:
        return exclusions.open()

    @property
    def regexp_match(self) -> Any:
        return exclusions.open()

    @property
    def regexp_replace(self) -> Any:
        return exclusions.open()

    @property
    def fetch_first(self) -> Any:
        return exclusions.open()

    @property
    def fetch_ties(self) -> Any:
        return exclusions.open()

    @property
    def fetch_no_order_by(self) -> Any:
        return exclusions.open()

    @property
    def reflect_table_options(self) -> Any:
        # PostgreSQL's dialect reflects table options from SQLAlchemy 2.1 on.
        from sqlalchemy.dialects.postgresql.base import PGDialect

        return exclusions.only_if(
            lambda config: "get_multi_table_options" in vars(PGDialect),
            "PGDialect reflects no table options before SQLAlchemy 2.1",
        )

    @property
    def materialized_views(self) -> Any:
        return exclusions.open()

    @property
    def supports_bitwise_or(self) -> Any:
        return exclusions.open()

    @property
    def supports_bitwise_and(self) -> Any:
        return exclusions.open()

    @property
    def supports_bitwise_not(self) -> Any:
        return exclusions.open()

    @property
    def supports_bitwise_xor(self) -> Any:
        return exclusions.open()

    @property
    def supports_bitwise_shift(self) -> Any:
        return exclusions.open()

    @property
    def server_side_cursors(self) -> Any:
        return exclusions.open()

    @property
    def isolation_level(self) -> Any:
        return exclusions.open()

    @property
    def json_index_supplementary_unicode_element(self) -> Any:
        return exclusions.open()

    @property
    def legacy_unconditional_json_extract(self) -> Any:
        return exclusions.open()

    @property
    def datetime_timezone(self) -> Any:
        return exclusions.open()

    @property
    def time_timezone(self) -> Any:
        return exclusions.open()

    @property
    def datetime_implicit_bound(self) -> Any:
        return exclusions.open()

    @property
    def date_implicit_bound(self) -> Any:
        return exclusions.open()

    @property
    def time_implicit_bound(self) -> Any:
        return exclusions.open()

    @property
    def timestamp_microseconds(self) -> Any:
        return exclusions.open()

    @property
    def datetime_interval(self) -> Any:
        return exclusions.open()

    @property
    def unicode_ddl(self) -> Any:
        return exclusions.open()

    @property
    def schemas(self) -> Any:
        return exclusions.open()

    @property
    def implicit_default_schema(self) -> Any:
        return exclusions.open()

    @property
    def sequences(self) -> Any:
        return exclusions.open()

    @property
    def sequences_optional(self) -> Any:
        return exclusions.open()

    @property
    def foreign_key_constraint_reflection(self) -> Any:
        return exclusions.open()

    @property
    def primary_key_constraint_reflection(self) -> Any:
        return exclusions.open()

    @property
    def unique_constraint_reflection(self) -> Any:
        return exclusions.open()

    @property
    def index_reflection(self) -> Any:
        return exclusions.open()

    @property
    def table_reflection(self) -> Any:
        return exclusions.open()

    @property
    def view_reflection(self) -> Any:
        return exclusions.open()

    @property
    def view_column_reflection(self) -> Any:
        return exclusions.open()

    @property
    def enforces_check_constraints(self) -> Any:
        return exclusions.open()

    @property
    def ctes_on_dml(self) -> Any:
        return exclusions.open()

    @property
    def ctes_with_update_delete(self) -> Any:
        return exclusions.open()

    @property
    def tuple_in(self) -> Any:
        return exclusions.open()

    @property
    def tuple_in_w_empty(self) -> Any:
        return exclusions.open()

    @property
    def returning(self) -> Any:
        return exclusions.open()

    @property
    def insert_returning(self) -> Any:
        return exclusions.open()

    @property
    def update_returning(self) -> Any:
        return exclusions.open()

    @property
    def delete_returning(self) -> Any:
        return exclusions.open()

    @property
    def insert_executemany_returning(self) -> Any:
        return exclusions.open()

    @property
    def insert_executemany_returning_sort_by_parameter_order(self) -> Any:
        return exclusions.open()

    @property
    def insertmanyvalues(self) -> Any:
        return exclusions.open()

    @property
    def empty_inserts(self) -> Any:
        return exclusions.open()

    @property
    def empty_inserts_executemany(self) -> Any:
        return exclusions.open()

    @property
    def full_returning(self) -> Any:
        return exclusions.open()

    @property
    def independent_connections(self) -> Any:
        return exclusions.open()

    @property
    def independent_readonly_connections(self) -> Any:
        return exclusions.open()

    @property
    def binary_comparisons(self) -> Any:
        return exclusions.open()

    @property
    def binary_literals(self) -> Any:
        return exclusions.open()

    @property
    def order_by_col_from_union(self) -> Any:
        return exclusions.open()

    @property
    def unicode_connections(self) -> Any:
        return exclusions.open()

    @property
    def unique_constraints_reflect_as_index(self) -> Any:
        return exclusions.open()

    # -- open: PostgreSQL does these (SuiteRequirements leaves them closed) ------

    @property
    def precision_numerics_retains_significant_digits(self) -> Any:
        return exclusions.open()

    @property
    def precision_numerics_many_significant_digits(self) -> Any:
        return exclusions.open()

    @property
    def identity_columns_standard(self) -> Any:
        return exclusions.open()

    @property
    def fetch_expression(self) -> Any:
        return exclusions.open()

    @property
    def fetch_offset_with_options(self) -> Any:
        return exclusions.open()

    @property
    def comment_reflection_full_unicode(self) -> Any:
        return exclusions.open()

    @property
    def inline_check_constraint_reflection(self) -> Any:
        return exclusions.open()

    @property
    def ctes_with_values(self) -> Any:
        return exclusions.open()

    @property
    def temp_table_comment_reflection(self) -> Any:
        return exclusions.open()

    @property
    def expression_server_defaults(self) -> Any:
        return exclusions.open()

    @property
    def datetime_literals(self) -> Any:
        return exclusions.open()

    @property
    def skip_autocommit_rollback(self) -> Any:
        return exclusions.open()

    # -- closed: PostgreSQL does not do these ---------------------------------------
    # fetch_percent (no FETCH ... PERCENT), materialized_views_reflect_pk (a materialized
    # view has no primary key), reflect_indexes_with_ascdesc_as_expression (PostgreSQL
    # reflects DESC as column_sorting, not as an expression), nvarchar_types,
    # computed_columns_virtual (STORED only before PostgreSQL 18), two_phase_transactions
    # (the dialect has no do_prepare_twophase): SuiteRequirements' closed default stands.

    def get_isolation_levels(self, config: Any) -> dict[str, Any]:
        """The levels the dialect under test accepts (asyncpg's has no READ UNCOMMITTED)."""
        levels = set(config.db.dialect._isolation_lookup)
        levels.add("AUTOCOMMIT")
        return {"default": "READ COMMITTED", "supported": sorted(levels)}
