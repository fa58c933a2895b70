using System.Linq.Expressions;
using Microsoft.Extensions.VectorData.ProviderServices;

namespace Rotor.Index.VectorData;

/// <summary>Translates a LINQ filter over records into a <see cref="Filter"/> on stored fields: comparisons of a data
/// property with a constant or captured value, combined with &amp;&amp;, || and !; a bool property alone means == true.</summary>
internal sealed class FilterTranslator(CollectionModel model)
{
    public Filter Translate(LambdaExpression lambda) => Visit(lambda.Body, lambda.Parameters[0]);

    private Filter Visit(Expression e, ParameterExpression record)
    {
        switch (e)
        {
            case BinaryExpression { NodeType: ExpressionType.AndAlso } b: return Filter.And(Visit(b.Left, record), Visit(b.Right, record));
            case BinaryExpression { NodeType: ExpressionType.OrElse } b: return Filter.Or(Visit(b.Left, record), Visit(b.Right, record));
            case UnaryExpression { NodeType: ExpressionType.Not } u: return Filter.Not(Visit(u.Operand, record));
            case BinaryExpression b when b.NodeType is ExpressionType.Equal or ExpressionType.NotEqual or ExpressionType.LessThan
                or ExpressionType.LessThanOrEqual or ExpressionType.GreaterThan or ExpressionType.GreaterThanOrEqual:
            {
                var op = b.NodeType;
                string? field = Field(b.Left, record);
                Expression other = b.Right;
                if (field is null)
                {
                    field = Field(b.Right, record);
                    other = b.Left;
                    op = Flip(op);
                }
                if (field is null) throw Unsupported(b);
                object? value = RotorCollection<string, object>.ToStored(Evaluate(other, record, b));
                if (value is null)
                    return op switch
                    {
                        ExpressionType.Equal => Filter.Not(Filter.Or(Exists(field))),
                        ExpressionType.NotEqual => Filter.Or(Exists(field)),
                        _ => throw Unsupported(b),
                    };
                return op switch
                {
                    ExpressionType.Equal => Filter.Eq(field, value),
                    ExpressionType.NotEqual => Filter.NotEq(field, value),
                    ExpressionType.LessThan => Filter.Less(field, value),
                    ExpressionType.LessThanOrEqual => Filter.LessOrEqual(field, value),
                    ExpressionType.GreaterThan => Filter.Greater(field, value),
                    _ => Filter.GreaterOrEqual(field, value),
                };
            }
            case ConstantExpression { Value: bool c }: return c ? Filter.Not(Filter.Or()) : Filter.Or();
            default:
                if (e.Type == typeof(bool) && Field(e, record) is { } boolField) return Filter.Eq(boolField, true);
                throw Unsupported(e);
        }
    }

    private static Filter[] Exists(string field) =>
        [Filter.GreaterOrEqual(field, long.MinValue), Filter.GreaterOrEqual(field, ""), Filter.Eq(field, true), Filter.Eq(field, false), Filter.Less(field, double.PositiveInfinity)];

    private static ExpressionType Flip(ExpressionType op) => op switch
    {
        ExpressionType.LessThan => ExpressionType.GreaterThan,
        ExpressionType.LessThanOrEqual => ExpressionType.GreaterThanOrEqual,
        ExpressionType.GreaterThan => ExpressionType.LessThan,
        ExpressionType.GreaterThanOrEqual => ExpressionType.LessThanOrEqual,
        _ => op,
    };

    /// <summary>The storage name of the data property an expression reads (r.Prop or r["Prop"]), else null.</summary>
    private string? Field(Expression e, ParameterExpression record)
    {
        while (e is UnaryExpression { NodeType: ExpressionType.Convert or ExpressionType.ConvertChecked } u) e = u.Operand;
        string? name = e switch
        {
            MemberExpression m when m.Expression == record => m.Member.Name,
            MethodCallExpression { Method.Name: "get_Item", Arguments: [ConstantExpression { Value: string key }] } c when c.Object == record => key,
            _ => null,
        };
        if (name is null) return null;
        if (!model.PropertyMap.TryGetValue(name, out var p)) throw new NotSupportedException($"filter reads '{name}', which is not a property of the record model");
        if (p is not DataPropertyModel) throw new NotSupportedException($"filter reads '{name}': Rotor filters on data properties only");
        return p.StorageName;
    }

    private static object? Evaluate(Expression e, ParameterExpression record, Expression whole)
    {
        if (new ParameterFinder(record).Finds(e)) throw Unsupported(whole);
        // A value the filter captured (a local, a field, a call): evaluated once a query, so it is interpreted rather
        // than compiled, which also needs no run-time code generation (native AOT).
        return e is ConstantExpression c ? c.Value
            : Expression.Lambda<Func<object?>>(Expression.Convert(e, typeof(object))).Compile(preferInterpretation: true)();
    }

    private static NotSupportedException Unsupported(Expression e) =>
        new($"filter '{e}' is not supported by Rotor: use comparisons (== != < <= > >=) of a data property with a value, combined with && || !");

    private sealed class ParameterFinder(ParameterExpression p) : ExpressionVisitor
    {
        private bool _found;
        public bool Finds(Expression e) { Visit(e); return _found; }
        protected override Expression VisitParameter(ParameterExpression node) { if (node == p) _found = true; return node; }
    }
}
